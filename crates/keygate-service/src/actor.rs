//! Who is asking: the subject of every service call.

use keygate_auth::AccountId;
use keygate_proto::UnixMillis;

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

    /// True if and only if this actor is an owner inside an elevated (step-up) window at `now`.
    #[must_use]
    pub fn stepped_up(&self, now: UnixMillis) -> bool {
        match self {
            Self::Owner { stepped_up_until, .. } => stepped_up_until.is_some_and(|u| u > now),
            Self::Operator { .. } | Self::System { .. } => true,
        }
    }
}
