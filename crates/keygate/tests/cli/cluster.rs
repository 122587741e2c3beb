//! Three `keygate serve` processes on one PostgreSQL database run one exchange (issue #13): one
//! node writes it, the others follow its journal and send it their commands. Orders through all
//! three at once never get a 500 and every acknowledged order is visible on every node; killing
//! the writer with SIGKILL under load hands the exchange to another node within 5 s, clients see
//! only -1001/-1007 meanwhile, and no acknowledged order is lost or changed. Skipped when
//! `KEYGATE_TEST_POSTGRES_URL` is not set.

use super::{Reaped, Sandbox, system_time};
use keygate_client::{Client, Signer};
use keygate_store::conformance::{Harness as _, PgHarness};
use reqwest::Method;
use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader, Write as _};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A node: its own data directory, the shared database and master key.
pub(super) struct Node {
    sandbox: Sandbox,
    url: String,
    master_key: std::path::PathBuf,
}

impl Node {
    pub(super) fn command(&self, args: &[&str]) -> Command {
        let mut c = self.sandbox.command(args);
        c.env("KEYGATE_DATABASE_URL", &self.url).env("KEYGATE_MASTER_KEY_FILE", &self.master_key);
        c
    }

    pub(super) fn json(&self, args: &[&str]) -> serde_json::Value {
        let out = self.command(args).stdin(Stdio::null()).output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    }

    pub(super) fn ok(&self, args: &[&str]) -> String {
        let out = self.command(args).stdin(Stdio::null()).output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    pub(super) fn account(&self, name: &str) {
        let mut child = self
            .command(&["accounts", "create", name, "--password-stdin"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(b"correct horse battery\n").unwrap();
        assert!(child.wait().unwrap().success());
    }

    /// Starts `keygate serve`; the process, its base URL and whether it says it writes the
    /// exchange. Its log goes to a file in its sandbox (a pipe nobody reads could fill up and
    /// stall it).
    fn serve(&self) -> (Reaped, String, bool) {
        self.serve_with(&[])
    }

    pub(super) fn serve_with(&self, extra: &[&str]) -> (Reaped, String, bool) {
        let log = std::fs::File::create(self.sandbox.dir.path().join("serve.log")).unwrap();
        let mut args = vec!["serve", "--listen", "127.0.0.1:0", "--rate-limits", "off"];
        args.extend_from_slice(extra);
        let mut child = self
            .command(&args)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = lines.next().unwrap().unwrap();
        let url = first.strip_prefix("keygate listening on ").expect("the address is printed first").to_owned();
        let role = lines.find_map(|l| l.ok().filter(|l| l.starts_with("node "))).expect("the node says its role");
        // The rest of stdout is drained so the server never blocks on it.
        std::thread::spawn(move || lines.for_each(drop));
        (Reaped(Some(child)), url, role.contains("writes the exchange"))
    }
}

/// What a node answered to an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Answered {
    /// 200: the order id.
    Placed(i64),
    /// A refusal the client expects (HTTP status, Binance code).
    Refused(u16, i64),
}

async fn place(client: &Client, side: &str, price: &str) -> Answered {
    // A client order id of its own: two otherwise equal orders signed in the same millisecond
    // would carry the same signature, which is single-use (-1022).
    let mut nonce = [0u8; 8];
    getrandom::getrandom(&mut nonce).unwrap();
    let client_id = format!("t{}", u64::from_le_bytes(nonce));
    let params = [
        ("newClientOrderId", client_id.as_str()),
        ("symbol", "BTCUSDT"),
        ("side", side),
        ("type", "LIMIT"),
        ("timeInForce", "GTC"),
        ("quantity", "0.001"),
        ("price", price),
    ];
    match client.signed(Method::POST, "/api/v3/order", &params).await {
        Ok(a) if a.status == 200 => Answered::Placed(a.body["orderId"].as_i64().unwrap()),
        Ok(a) => Answered::Refused(a.status, a.body["code"].as_i64().unwrap_or(0)),
        // The node was killed under the request.
        Err(_) => Answered::Refused(0, 0),
    }
}

/// Cancels an order: `Placed(id)` when the cancel was acknowledged.
async fn cancel(client: &Client, order_id: i64) -> Answered {
    let id = order_id.to_string();
    match client.signed(Method::DELETE, "/api/v3/order", &[("symbol", "BTCUSDT"), ("orderId", id.as_str())]).await {
        Ok(a) if a.status == 200 => Answered::Placed(order_id),
        Ok(a) => Answered::Refused(a.status, a.body["code"].as_i64().unwrap_or(0)),
        Err(_) => Answered::Refused(0, 0),
    }
}

/// The order's status as `client`'s node reports it, once the node has it (read copies follow
/// the writer within milliseconds).
async fn status_on(client: &Client, order_id: i64) -> String {
    let id = order_id.to_string();
    let start = Instant::now();
    loop {
        let a = client
            .signed(Method::GET, "/api/v3/order", &[("symbol", "BTCUSDT"), ("orderId", id.as_str())])
            .await
            .unwrap();
        if a.status == 200 {
            return a.body["status"].as_str().unwrap().to_owned();
        }
        assert!(start.elapsed() < Duration::from_secs(5), "order {order_id} never reached a node: {:?}", a.body);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A fresh test database and `n` nodes on it (each its own sandbox, all the first one's master
/// key), with the database kept alive as long as the caller holds it.
pub(super) async fn nodes_on_a_fresh_database(n: usize) -> (PgHarness, String, Vec<Node>) {
    let db = PgHarness::fresh().await;
    let base = std::env::var("KEYGATE_TEST_POSTGRES_URL").unwrap();
    let (server_part, _) = base.rsplit_once('/').unwrap();
    let url = format!("{server_part}/{}", db.database());
    let first = Sandbox::new();
    let master_key = first.master_key();
    let nodes = std::iter::once(first)
        .chain((1..n).map(|_| Sandbox::new()))
        .map(|sandbox| Node { sandbox, url: url.clone(), master_key: master_key.clone() })
        .collect();
    (db, url, nodes)
}

/// One order of [`place_and_cancel_until`]: when it was sent, its answer, the cancel's, and how
/// long the order took.
type Sent = (Instant, Answered, Option<Answered>, Duration);

/// Load through `clients` until `stop`: a buy far below the book, canceled at once (so the
/// account never reaches its open-order limit; the cancel goes to the writer too). Each entry:
/// when the order was sent (only orders sent after a fault count as taken again after it), its
/// answer, the cancel's, and how long the order took.
fn place_and_cancel_until(
    clients: &[Arc<Client>],
    stop: &Arc<std::sync::atomic::AtomicBool>,
) -> Vec<tokio::task::JoinHandle<Vec<Sent>>> {
    clients
        .iter()
        .map(|c| {
            let (c, stop) = (Arc::clone(c), Arc::clone(stop));
            tokio::spawn(async move {
                let mut out = Vec::new();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let at = Instant::now();
                    let placed = place(&c, "BUY", "40000").await;
                    let answered = at.elapsed();
                    let canceled = match placed {
                        Answered::Placed(id) => Some(cancel(&c, id).await),
                        Answered::Refused(..) => None,
                    };
                    out.push((at, placed, canceled, answered));
                }
                out
            })
        })
        .collect()
}

/// Stops the load and collects what it was answered, in the order the orders were sent.
async fn settle(load: Vec<tokio::task::JoinHandle<Vec<Sent>>>, stop: &std::sync::atomic::AtomicBool) -> Vec<Sent> {
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut sent = Vec::new();
    for t in load {
        sent.extend(t.await.unwrap());
    }
    sent.sort_by_key(|(at, ..)| *at);
    sent
}

/// Checks that a client saw only what it may while the exchange recovers from a fault at
/// `fault_at` (nothing carried out, -1001, or sent and unanswered, -1007; never a 500), and
/// returns how long after the fault an order sent after it was first acknowledged, and how many
/// sent after it were refused.
fn through_a_fault(sent: &[Sent], fault_at: Instant, fault: &str) -> (Duration, usize) {
    for a in sent.iter().flat_map(|(_, placed, canceled, _)| std::iter::once(placed).chain(canceled)) {
        assert!(
            matches!(a, Answered::Placed(_) | Answered::Refused(503, -1001 | -1007)),
            "after {fault} a client got {a:?}"
        );
    }
    let back = sent
        .iter()
        .find(|(at, a, ..)| *at > fault_at && matches!(a, Answered::Placed(_)))
        .map(|(at, _, _, answered)| at.duration_since(fault_at) + *answered)
        .unwrap_or_else(|| panic!("orders were never taken again after {fault}"));
    let refused = sent.iter().filter(|(at, a, ..)| *at > fault_at && !matches!(a, Answered::Placed(_))).count();
    (back, refused)
}

/// Every order acknowledged during the load is on each of `clients`' nodes: canceled when its
/// cancel was acknowledged, else new or canceled (an unacknowledged cancel may or may not have
/// happened).
async fn still_standing(sent: &[Sent], clients: &[Arc<Client>], when: &str) {
    for (_, placed, canceled, _) in sent {
        if let Answered::Placed(id) = placed {
            let want: &[&str] = match canceled {
                Some(Answered::Placed(_)) => &["CANCELED"],
                _ => &["NEW", "CANCELED"],
            };
            for c in clients {
                let now = status_on(c, *id).await;
                assert!(want.contains(&now.as_str()), "order {id} {when}: {now}, expected {want:?}");
            }
        }
    }
}

fn trader(node: &Node, account: &str) -> (String, String) {
    let k = node.json(&["keys", "create", "--account", account, "--permissions", "read,trade", "--json"]);
    (k["api_key"].as_str().unwrap().to_owned(), k["secret"].as_str().unwrap().to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_run_one_exchange_and_survive_the_writer_being_killed() {
    if let Err(why) = PgHarness::available() {
        let _ = std::io::stderr().write_all(format!("cluster: skipped: {why}\n").as_bytes());
        return;
    }
    let _alone = super::SEVERAL_SERVERS.lock().await;
    let (db, url, nodes) = nodes_on_a_fresh_database(3).await;
    let master_key = nodes[0].master_key.clone();
    nodes[0].account("alice");
    nodes[0].account("bob");
    // No server runs yet: the command writes the exchange itself.
    nodes[0].ok(&["deposit", "--account", "alice", "--asset", "USDT", "--amount", "100000"]);
    nodes[0].ok(&["deposit", "--account", "bob", "--asset", "BTC", "--amount", "10"]);
    let mut servers: Vec<Reaped> = Vec::new();
    let mut urls = Vec::new();
    let mut writers = Vec::new();
    for (i, n) in nodes.iter().enumerate() {
        let (child, http, writes) = n.serve();
        servers.push(child);
        urls.push(http);
        if writes {
            writers.push(i);
        }
    }
    assert_eq!(writers, vec![0], "the first node to start writes the exchange, and only it");
    // Operator commands reach the writer too: through a following node's admin socket, and from
    // a command-line process of its own (which follows, and sends its deposit to the writer).
    nodes[2].ok(&["deposit", "--account", "alice", "--asset", "USDT", "--amount", "1"]);
    let outsider = Node { sandbox: Sandbox::new(), url: url.clone(), master_key: master_key.clone() };
    std::fs::create_dir_all(outsider.sandbox.data()).unwrap();
    std::fs::set_permissions(outsider.sandbox.data(), std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    outsider.ok(&["deposit", "--account", "alice", "--asset", "USDT", "--amount", "2"]);
    let (alice_key, alice_secret) = trader(&nodes[1], "alice");
    let (bob_key, bob_secret) = trader(&nodes[2], "bob");
    let client = |node: usize, key: &str, secret: &str| {
        Arc::new(Client::new(urls[node].clone(), key, Signer::hmac(secret), system_time()))
    };
    let alice: Vec<_> = (0..3).map(|n| client(n, &alice_key, &alice_secret)).collect();
    let bob: Vec<_> = (0..3).map(|n| client(n, &bob_key, &bob_secret)).collect();
    for c in alice.iter().chain(&bob) {
        let start = Instant::now();
        while c.signed(Method::GET, "/api/v3/account", &[]).await.unwrap().status != 200 {
            assert!(start.elapsed() < Duration::from_secs(5), "the new key never reached {}", urls[0]);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    // Orders through all three nodes at once; some cross (alice buys at or above bob's asks).
    let started = Instant::now();
    let mut tasks = Vec::new();
    for n in 0..3 {
        for (owner, who, side) in [(0usize, &alice, "BUY"), (1, &bob, "SELL")] {
            let c = Arc::clone(&who[n]);
            tasks.push(tokio::spawn(async move {
                let mut out = Vec::new();
                for i in 0..25u32 {
                    let price = if side == "BUY" { 50_000 + (i % 5) * 10 } else { 50_020 + (i % 5) * 10 };
                    let answer = place(&c, side, &price.to_string()).await;
                    // Read your write: the node that took the order reports it at once.
                    if let Answered::Placed(id) = answer {
                        let id = id.to_string();
                        let own = c
                            .signed(Method::GET, "/api/v3/order", &[("symbol", "BTCUSDT"), ("orderId", id.as_str())])
                            .await
                            .unwrap();
                        assert_eq!(own.status, 200, "order {id} not readable on the node that took it: {:?}", own.body);
                    }
                    out.push((owner, answer));
                }
                out
            }));
        }
    }
    let mut answers = Vec::new();
    for t in tasks {
        answers.extend(t.await.unwrap());
    }
    let took = started.elapsed();
    let refused: Vec<_> = answers.iter().filter(|(_, a)| !matches!(a, Answered::Placed(_))).collect();
    assert!(refused.is_empty(), "orders through three nodes were refused: {refused:?}");
    let placed: Vec<(usize, i64)> = answers
        .iter()
        .filter_map(|(owner, a)| match a {
            Answered::Placed(id) => Some((*owner, *id)),
            Answered::Refused(..) => None,
        })
        .collect();
    let mut unique: Vec<i64> = placed.iter().map(|(_, id)| *id).collect();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), placed.len(), "one id per order");
    let owners = [&alice, &bob];
    // Every node reports every acknowledged order, with the same status once it has settled
    // (a resting order may fill meanwhile, so the comparison is made after the load).
    let mut statuses: BTreeMap<i64, (usize, String)> = BTreeMap::new();
    for &(owner, id) in &placed {
        let start = Instant::now();
        loop {
            let mut seen = Vec::new();
            for c in owners[owner].iter() {
                seen.push(status_on(c, id).await);
            }
            if seen.windows(2).all(|w| w[0] == w[1]) {
                statuses.insert(id, (owner, seen[0].clone()));
                break;
            }
            assert!(start.elapsed() < Duration::from_secs(5), "order {id}: nodes disagree: {seen:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let _ = writeln!(
        std::io::stderr(),
        "{} orders through 3 nodes in {took:?}; {} filled",
        placed.len(),
        statuses.values().filter(|(_, s)| s == "FILLED").count()
    );

    // Kill the writer under load from the other two nodes.
    let stop_load = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = place_and_cancel_until(&alice[1..], &stop_load);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let killed_at = Instant::now();
    servers[0].kill();
    tokio::time::sleep(Duration::from_secs(6)).await;
    let after = settle(load, &stop_load).await;
    let (resumed, outage) = through_a_fault(&after, killed_at, "the writer was killed");
    let _ = writeln!(
        std::io::stderr(),
        "writer killed: orders taken again after {resumed:?} ({outage} refused meanwhile, {} orders in all)",
        after.len()
    );
    assert!(resumed < Duration::from_secs(5), "failover took {resumed:?}");

    // Nothing acknowledged was lost or changed: every order taken before and during the
    // failover is on both surviving nodes, the earlier ones with the status they had.
    for (&id, (owner, status)) in &statuses {
        for c in &owners[*owner][1..] {
            let now = status_on(c, id).await;
            // Buys at 40,000 rest below every ask: nothing placed during the failover fills an
            // earlier order, so every earlier status stands exactly.
            assert_eq!(&now, status, "order {id} changed across the failover");
        }
    }
    still_standing(&after, &alice[1..], "after the failover").await;
    // Every connection to the database dropped under load (the writer's lock with them): the
    // nodes reconnect, one of them takes the exchange again, and nothing acknowledged is lost.
    let stop_load = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = place_and_cancel_until(&alice[1..], &stop_load);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut admin = {
        use sqlx::Connection as _;
        sqlx::postgres::PgConnection::connect_with(&db.options().database("postgres")).await.unwrap()
    };
    let dropped_at = Instant::now();
    let dropped: Vec<(bool,)> = sqlx::query_as(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
    )
    .bind(db.database())
    .fetch_all(&mut admin)
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let during = settle(load, &stop_load).await;
    let (back, refused) = through_a_fault(&during, dropped_at, "the connections were dropped");
    let _ = writeln!(
        std::io::stderr(),
        "{} database connections dropped: orders taken again after {back:?}, {refused} refused",
        dropped.len(),
    );
    still_standing(&during, &alice[1..], "after the dropped connections").await;

    let balance = alice[2].signed(Method::GET, "/api/v3/account", &[]).await.unwrap();
    let usdt = balance.body["balances"].as_array().unwrap().iter().find(|b| b["asset"] == "USDT").cloned().unwrap();
    let total = usdt["free"].as_str().unwrap().parse::<f64>().unwrap()
        + usdt["locked"].as_str().unwrap().parse::<f64>().unwrap();
    assert!(total > 100_002.0 - 25.0 * 3.0 * 50_050.0 * 0.001 - 1.0, "both CLI deposits arrived: {usdt}");
    let journal = nodes[1].ok(&["audit", "journal"]);
    assert!(journal.contains("intact"), "{journal}");
    for server in servers.into_iter().skip(1) {
        server.stop();
    }
}

/// Order throughput through one, two and three nodes of one exchange, as ratios to one node (the
/// writer alone): the followers' forwarding costs a hop each, and the writer's engine carries
/// every order whichever node took it. A measurement, not a check: run it as
/// `cargo test --release -p keygate --test cli order_throughput -- --ignored --nocapture`
/// (docs/benchmarks.md records the numbers).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: run with --release --ignored --nocapture (docs/benchmarks.md)"]
async fn order_throughput_through_one_two_and_three_nodes() {
    if let Err(why) = PgHarness::available() {
        let _ = std::io::stderr().write_all(format!("cluster throughput: skipped: {why}\n").as_bytes());
        return;
    }
    let _alone = super::SEVERAL_SERVERS.lock().await;
    let (_db, _url, nodes) = nodes_on_a_fresh_database(3).await;
    nodes[0].account("alice");
    nodes[0].ok(&["deposit", "--account", "alice", "--asset", "USDT", "--amount", "1000000000"]);
    let servers: Vec<(Reaped, String, bool)> = nodes.iter().map(Node::serve).collect();
    let (key, secret) = trader(&nodes[0], "alice");
    let connections: usize =
        std::env::var("KEYGATE_CLUSTER_CONNECTIONS").ok().and_then(|v| v.parse().ok()).unwrap_or(32);
    let seconds: u64 = std::env::var("KEYGATE_CLUSTER_SECONDS").ok().and_then(|v| v.parse().ok()).unwrap_or(5);
    let mut rates = Vec::new();
    for through in 1..=3usize {
        let stop = Instant::now() + Duration::from_secs(seconds);
        let mut tasks = Vec::new();
        for c in 0..connections {
            let base = servers[c % through].1.clone();
            let client = Client::new(base, key.clone(), Signer::hmac(&secret), system_time());
            tasks.push(tokio::spawn(async move {
                let mut ok = 0u64;
                while Instant::now() < stop {
                    // Immediate-or-cancel below every ask: journaled, then expired, so the book
                    // and the account's open orders stay empty however long it runs.
                    let mut nonce = [0u8; 8];
                    getrandom::getrandom(&mut nonce).unwrap();
                    let id = format!("b{}", u64::from_le_bytes(nonce));
                    let params = [
                        ("newClientOrderId", id.as_str()),
                        ("symbol", "BTCUSDT"),
                        ("side", "BUY"),
                        ("type", "LIMIT"),
                        ("timeInForce", "IOC"),
                        ("quantity", "0.001"),
                        ("price", "10000"),
                        ("newOrderRespType", "ACK"),
                    ];
                    let a = client.signed(Method::POST, "/api/v3/order", &params).await.unwrap();
                    assert_eq!(a.status, 200, "{:?}", a.body);
                    ok += 1;
                }
                ok
            }));
        }
        let mut total = 0;
        for t in tasks {
            total += t.await.unwrap();
        }
        #[allow(clippy::cast_precision_loss)]
        let rate = total as f64 / seconds as f64;
        rates.push(rate);
        let _ = writeln!(
            std::io::stderr(),
            "orders through {through} node(s), {connections} connections, {seconds} s: {rate:.0}/s, {:.2} of one node",
            rate / rates[0]
        );
    }
    for (server, ..) in servers {
        server.stop();
    }
}

/// The bids and asks on BTCUSDT as a node shows them.
async fn levels(base: &str) -> (usize, usize) {
    let depth: serde_json::Value =
        reqwest::get(format!("{base}/api/v3/depth?symbol=BTCUSDT")).await.unwrap().json().await.unwrap();
    (depth["bids"].as_array().map_or(0, Vec::len), depth["asks"].as_array().map_or(0, Vec::len))
}

/// Waits until `base` shows the market maker's five levels a side.
async fn until_quoted(base: &str) {
    let start = Instant::now();
    loop {
        let seen = levels(base).await;
        if seen == (5, 5) {
            return;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "{base} never showed one market maker's quotes: {seen:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Three nodes started at the same moment with `--market-maker` on a new database all come up
/// (one of them creates the market maker's account), one of them writes, and only its market
/// maker quotes: every node shows five levels a side, not ten or fifteen. When the writer is
/// killed, the next one's market maker takes over the quoting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_started_together_with_the_market_maker_quote_once() {
    if let Err(why) = PgHarness::available() {
        let _ = std::io::stderr().write_all(format!("cluster market maker: skipped: {why}\n").as_bytes());
        return;
    }
    let _alone = super::SEVERAL_SERVERS.lock().await;
    let (_db, _url, nodes) = nodes_on_a_fresh_database(3).await;
    let nodes: Vec<Arc<Node>> = nodes.into_iter().map(Arc::new).collect();
    // The first start creates the database's tables; the race is the account, not the schema.
    nodes[0].account("alice");
    let starting: Vec<_> = nodes
        .iter()
        .map(|n| {
            let n = Arc::clone(n);
            std::thread::spawn(move || n.serve_with(&["--market-maker", "--market-flow", "off"]))
        })
        .collect();
    let mut servers: Vec<(Reaped, String, bool)> = starting.into_iter().map(|t| t.join().unwrap()).collect();
    assert_eq!(servers.iter().filter(|(_, _, writes)| *writes).count(), 1, "one writer");
    for (_, base, _) in &servers {
        until_quoted(base).await;
    }
    // A second look a few ticks later: still one market maker's levels everywhere.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    for (_, base, _) in &servers {
        assert_eq!(levels(base).await, (5, 5), "{base}");
    }
    let writer = servers.iter().position(|(_, _, writes)| *writes).unwrap();
    let (mut killed, ..) = servers.remove(writer);
    killed.kill();
    let before = levels(&servers[0].1).await;
    assert_eq!(before, (5, 5));
    // The dead writer's quotes stay in the book until the new writer's market maker, which
    // starts from the book as it finds it, replaces them: the book's update id moves on.
    let update_id = |base: String| async move {
        let depth: serde_json::Value =
            reqwest::get(format!("{base}/api/v3/depth?symbol=BTCUSDT")).await.unwrap().json().await.unwrap();
        depth["lastUpdateId"].as_i64().unwrap()
    };
    let at_kill = update_id(servers[0].1.clone()).await;
    let start = Instant::now();
    while update_id(servers[0].1.clone()).await == at_kill {
        assert!(start.elapsed() < Duration::from_secs(10), "no market maker quoted after the writer was killed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = writeln!(std::io::stderr(), "the next writer's market maker quoted {:?} after the kill", start.elapsed());
    for (_, base, _) in &servers {
        until_quoted(base).await;
    }
    for (server, ..) in servers {
        server.stop();
    }
}

/// A writer that is paused (SIGSTOP), not dead, keeps its lock's connection open, so the lock
/// alone would never pass on; it stops renewing its lease, and the other node ends that
/// connection and takes over within a few seconds. Resumed, the old writer finds itself deposed
/// and follows: it never appends again, and no client gets a 500.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_writer_is_deposed_and_follows_when_it_resumes() {
    if let Err(why) = PgHarness::available() {
        let _ = std::io::stderr().write_all(format!("cluster pause: skipped: {why}\n").as_bytes());
        return;
    }
    let _alone = super::SEVERAL_SERVERS.lock().await;
    let (_db, _url, nodes) = nodes_on_a_fresh_database(2).await;
    nodes[0].account("alice");
    nodes[0].ok(&["deposit", "--account", "alice", "--asset", "USDT", "--amount", "100000"]);
    let mut servers: Vec<(Reaped, String, bool)> = nodes.iter().map(Node::serve).collect();
    assert!(servers[0].2 && !servers[1].2);
    let (key, secret) = trader(&nodes[1], "alice");
    let clients: Vec<Client> = servers
        .iter()
        .map(|(_, http, _)| Client::new(http.clone(), &key, Signer::hmac(&secret), system_time()))
        .collect();
    let start = Instant::now();
    while clients[1].signed(Method::GET, "/api/v3/account", &[]).await.unwrap().status != 200 {
        assert!(start.elapsed() < Duration::from_secs(5));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(matches!(place(&clients[1], "BUY", "40000").await, Answered::Placed(_)));
    let pid = servers[0].0.pid().to_string();
    assert!(Command::new("kill").args(["-STOP", &pid]).status().unwrap().success());
    let paused_at = Instant::now();
    // Orders through the other node: refused (never a 500) until it takes over, then taken.
    let mut taken_after = None;
    while paused_at.elapsed() < Duration::from_secs(15) {
        let sent = Instant::now();
        match place(&clients[1], "BUY", "40000").await {
            Answered::Placed(_) if sent > paused_at => {
                taken_after = Some(paused_at.elapsed());
                break;
            }
            Answered::Placed(_) | Answered::Refused(503, -1001 | -1007) => {}
            other => panic!("while the writer was paused a client got {other:?}"),
        }
    }
    let taken_after = taken_after.expect("the paused writer was never replaced");
    let _ =
        writeln!(std::io::stderr(), "a paused writer was replaced: orders taken again {taken_after:?} after SIGSTOP");
    assert!(taken_after < Duration::from_secs(8), "{taken_after:?}");
    assert!(Command::new("kill").args(["-CONT", &pid]).status().unwrap().success());
    // Resumed, the old writer notices it was deposed and sends its commands to the new one.
    let start = Instant::now();
    loop {
        match place(&clients[0], "BUY", "40000").await {
            Answered::Placed(_) => break,
            Answered::Refused(503, -1001 | -1007) => {}
            other => panic!("the resumed node answered {other:?}"),
        }
        assert!(start.elapsed() < Duration::from_secs(10), "the resumed node never served again");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let journal = nodes[1].ok(&["audit", "journal"]);
    assert!(journal.contains("intact"), "{journal}");
    for (server, ..) in servers.drain(..) {
        server.stop();
    }
}
