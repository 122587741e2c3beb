//! Who is asking: the subject of every service call.

use keygate_auth::AccountId;
use keygate_proto::UnixMillis;

/// How long a [`FreshCode`] counts after its code was accepted: long enough for the request that
/// carried the code to finish, far shorter than the step-up window.
pub const FRESH_CODE_MS: u64 = 60_000;

/// Proof that the owner typed a valid 2FA code (TOTP or recovery code) with the current request.
/// Its field is private, so only the service can make one: a console that forgets to ask for the
/// code cannot pass a change that needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FreshCode {
    at: UnixMillis,
}

impl FreshCode {
    /// Made by the service when it accepts a code at `at`.
    pub(crate) fn accepted_at(at: UnixMillis) -> Self {
        Self { at }
    }

    /// When the code was accepted.
    #[must_use]
    pub fn at(&self) -> UnixMillis {
        self.at
    }
}

/// The party performing an operation. DESIGN.md section 3 decides what each may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// An account owner in a console or API session.
    Owner {
        /// The owner's account.
        account_id: AccountId,
        /// The account name, for audit records.
        name: String,
        /// End of the elevated window opened by a fresh TOTP code, if any.
        stepped_up_until: Option<UnixMillis>,
        /// The client address.
        source: Option<String>,
        /// Proof that a 2FA code was typed with this very request (issue #18): the changes that
        /// move money out or take over the account ask for it, whatever the step-up window says.
        /// Only the service makes one ([`crate::Service::step_up`] returns it).
        fresh_code: Option<FreshCode>,
    },
    /// The operator, through the CLI on the server's machine (admin socket or direct store).
    Operator {
        /// How they reached us: `cli` or `admin-socket`.
        via: String,
    },
    /// keygate itself, applying a policy (expiry, demo setup).
    System {
        /// Which policy.
        policy: String,
    },
}

impl Actor {
    /// The operator using the CLI with the store opened directly.
    #[must_use]
    pub fn operator_cli() -> Self {
        Self::Operator { via: "cli".into() }
    }

    /// `owner`, `operator` or `system`: the mark left on keys this actor changes.
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Owner { .. } => "owner",
            Self::Operator { .. } => "operator",
            Self::System { .. } => "system",
        }
    }

    /// `owner:alice`, `operator:cli`, `system:expiry`: the actor column of audit records.
    #[must_use]
    pub fn label(&self) -> String {
        match self {
            Self::Owner { name, .. } => format!("owner:{name}"),
            Self::Operator { via } => format!("operator:{via}"),
            Self::System { policy } => format!("system:{policy}"),
        }
    }

    /// The network source for audit records.
    #[must_use]
    pub fn source(&self) -> Option<String> {
        match self {
            Self::Owner { source, .. } => source.clone(),
            Self::Operator { via } => Some(via.clone()),
            Self::System { .. } => None,
        }
    }

    /// This actor carrying `fresh` (owners only; others need no code and are returned as they are).
    #[must_use]
    pub fn with_fresh_code(mut self, fresh: FreshCode) -> Self {
        if let Self::Owner { fresh_code, .. } = &mut self {
            *fresh_code = Some(fresh);
        }
        self
    }

    /// True if and only if this actor typed a 2FA code with the current request (an owner whose
    /// [`FreshCode`] is at most [`FRESH_CODE_MS`] old at `now`), or is the operator or the system,
    /// who never need one.
    #[must_use]
    pub fn has_fresh_code(&self, now: UnixMillis) -> bool {
        match self {
            Self::Owner { fresh_code, .. } => {
                fresh_code.is_some_and(|f| f.at <= now && now.0 - f.at.0 <= FRESH_CODE_MS)
            }
            Self::Operator { .. } | Self::System { .. } => true,
        }
    }

    /// True if and only if this actor is an owner inside an elevated (step-up) window at `now`.
    #[must_use]
    pub fn stepped_up(&self, now: UnixMillis) -> bool {
        match self {
            Self::Owner { stepped_up_until, .. } => stepped_up_until.is_some_and(|u| u > now),
            Self::Operator { .. } | Self::System { .. } => true,
        }
    }
}
