// Tests fail loudly by design.
#![allow(clippy::expect_used, clippy::unwrap_used)]

//! Three scheduler processes on one database and one broker namespace, an
//! every-second schedule: each slot fires exactly once, in `schedule_runs`
//! and on the broker, through the loss of the leader's session
//! (`pg_terminate_backend`) and the SIGKILL of the next leader.

use chrono::{DateTime, Duration, Utc};
use diesel::prelude::*;
use diesel::sql_types::Integer;
use lapin::options::BasicGetOptions;
use std::collections::{BTreeMap, BTreeSet};
use stockflow_db::schema::{outbox, schedule_runs, schedules};
use stockflow_testkit::{ProcessEnv, ServiceProcess, eventually};
use uuid::Uuid;

const BINARY: &str = env!("CARGO_BIN_EXE_stockflow-scheduler");
const TICK_MS: u64 = 500;
const LEASE_SECS: i64 = 4;

fn every_second(conn: &mut PgConnection) -> Uuid {
    diesel::insert_into(schedules::table)
        .values((
            schedules::name.eq("heartbeat"),
            schedules::cron.eq("* * * * * *"),
            schedules::routing_key.eq("maintenance.ping"),
            schedules::payload.eq(serde_json::json!({"note": "replicas"})),
            // A slot of the pattern: a whole second, a moment from now.
            schedules::next_run_at.eq(DateTime::from_timestamp(Utc::now().timestamp() + 3, 0).unwrap()),
            // Every slot, even those passed during a failover; no job
            // reports back in this test, so runs must not block each other.
            schedules::misfire_policy.eq("fire_all"),
            schedules::catchup_window_secs.eq(120),
            schedules::overlap_policy.eq("allow"),
        ))
        .returning(schedules::id)
        .get_result(conn)
        .unwrap()
}

fn fired(conn: &mut PgConnection, id: Uuid) -> Vec<(DateTime<Utc>, DateTime<Utc>, Option<Uuid>)> {
    schedule_runs::table
        .filter(schedule_runs::schedule_id.eq(id))
        .order(schedule_runs::slot)
        .select((schedule_runs::slot, schedule_runs::fired_at, schedule_runs::job_id))
        .load(conn)
        .unwrap()
}

#[derive(QueryableByName)]
struct Pid {
    #[diesel(sql_type = Integer)]
    pid: i32,
}

/// The backend that holds the leader lock.
fn leader_backend(conn: &mut PgConnection) -> Option<i32> {
    diesel::sql_query(format!(
        "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND classid = {} AND objid = {}",
        (stockflow_db::schedules::LEADER_LOCK >> 32) & 0xffff_ffff,
        stockflow_db::schedules::LEADER_LOCK & 0xffff_ffff
    ))
    .get_result::<Pid>(conn)
    .optional()
    .unwrap()
    .map(|row| row.pid)
}

async fn role(client: &reqwest::Client, process: &ServiceProcess) -> Option<String> {
    let url = format!("http://127.0.0.1:{}/readyz", process.port);
    let body: serde_json::Value = client.get(url).send().await.ok()?.json().await.ok()?;
    body["role"].as_str().map(str::to_owned)
}

/// The index of the replica that reports itself leader, once exactly one does.
async fn the_leader(client: &reqwest::Client, replicas: &[Option<ServiceProcess>]) -> usize {
    eventually("exactly one replica to report role leader", std::time::Duration::from_secs(15), || async {
        let mut leaders = Vec::new();
        for (index, replica) in replicas.iter().enumerate() {
            if let Some(replica) = replica
                && role(client, replica).await.as_deref() == Some("leader")
            {
                leaders.push(index);
            }
        }
        (leaders.len() == 1).then(|| leaders[0])
    })
    .await
}

async fn wait_for_runs(conn: &mut PgConnection, id: Uuid, at_least: usize) {
    eventually(&format!("{at_least} runs"), std::time::Duration::from_secs(60), || {
        let count = fired(conn, id).len();
        std::future::ready((count >= at_least).then_some(()))
    })
    .await;
}

/// The first run fired after `since` (by the database's clock).
fn first_fired_after(conn: &mut PgConnection, id: Uuid, since: DateTime<Utc>) -> Option<DateTime<Utc>> {
    fired(conn, id).into_iter().map(|(_, at, _)| at).filter(|at| *at > since).min()
}

fn database_now(conn: &mut PgConnection) -> DateTime<Utc> {
    stockflow_db::schedules::now(conn).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_fire_every_slot_once_through_two_failovers() {
    let env = ProcessEnv::new()
        .with("SCHEDULER_TICK_MS", &TICK_MS.to_string())
        .with("SCHEDULER_LEASE_SECS", &LEASE_SECS.to_string())
        .with("OUTBOX_SWEEP_INTERVAL_MS", "500")
        .with("DB_BACKUP_CRON", "off")
        .with("MEDIA_BACKUP_CRON", "off")
        .with("CLEANUP_UPLOADS_INTERVAL_HOURS", "off")
        .with("EXPORT_EXPIRY_CRON", "off")
        .with("STORAGE_RECONCILE_CRON", "off");
    let conn = &mut env.database.connect();
    let id = every_second(conn);
    let mut replicas: Vec<Option<ServiceProcess>> =
        (0..3).map(|_| Some(ServiceProcess::spawn(&env, BINARY, "SCHEDULER_HEALTH_BIND"))).collect();
    for replica in replicas.iter().flatten() {
        replica.wait_ready(std::time::Duration::from_secs(30)).await;
    }
    let client = stockflow_testkit::http_client();
    let takeover_bound = Duration::seconds(LEASE_SECS) + Duration::milliseconds(TICK_MS as i64);
    // Slack for scheduling on a loaded 2-core machine.
    let slack = Duration::milliseconds(1500);

    // 1. The first leader fires for a while.
    let first = the_leader(&client, &replicas).await;
    for (index, replica) in replicas.iter().enumerate().filter(|(index, _)| *index != first) {
        let replica = replica.as_ref().unwrap();
        let response = client.get(format!("http://127.0.0.1:{}/readyz", replica.port)).send().await.unwrap();
        assert_eq!(response.status(), 200, "a standby is ready");
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["role"], "standby", "replica {index}: {body}");
    }
    wait_for_runs(conn, id, 10).await;

    // 2. Its session is terminated: it can no longer commit, and a standby
    //    (or it, reconnected) takes the lock within lease + one tick.
    let backend = leader_backend(conn).expect("a session holds the leader lock");
    let cut_at = database_now(conn);
    diesel::sql_query(format!("SELECT pg_terminate_backend({backend})")).execute(conn).unwrap();
    let resumed = eventually("a run after the session was cut", std::time::Duration::from_secs(20), || {
        std::future::ready(first_fired_after(conn, id, cut_at))
    })
    .await;
    assert!(resumed - cut_at <= takeover_bound + slack, "took {} to fire again", resumed - cut_at);
    eprintln!("fired again {} ms after the leader's session was terminated", (resumed - cut_at).num_milliseconds());
    let runs_so_far = fired(conn, id).len();
    wait_for_runs(conn, id, runs_so_far + 10).await;

    // 3. The leader now (whichever it is) is killed outright.
    let second = the_leader(&client, &replicas).await;
    let killed_at = database_now(conn);
    replicas[second].take().expect("the leader runs").kill();
    let resumed = eventually("a run after the leader was killed", std::time::Duration::from_secs(20), || {
        std::future::ready(first_fired_after(conn, id, killed_at))
    })
    .await;
    assert!(resumed - killed_at <= takeover_bound + slack, "took {} to fire again", resumed - killed_at);
    eprintln!("fired again {} ms after the leader was killed", (resumed - killed_at).num_milliseconds());
    let third = the_leader(&client, &replicas).await;
    assert_ne!(third, second, "a survivor leads");
    let runs_so_far = fired(conn, id).len();
    wait_for_runs(conn, id, (runs_so_far + 10).max(35)).await;
    eprintln!("leaders: {first} -> {second} -> {third}");

    // 4. Stop: the survivors publish what the killed one left in the outbox.
    eventually("every job published", std::time::Duration::from_secs(20), || {
        let left: i64 = outbox::table.filter(outbox::published_at.is_null()).count().get_result(conn).unwrap();
        std::future::ready((left == 0).then_some(()))
    })
    .await;
    for replica in replicas.iter_mut().flatten() {
        let (status, _) = replica.terminate(std::time::Duration::from_secs(10));
        assert!(status.success(), "{status:?}");
    }

    // Every second from the first slot to the last fired once: none
    // twice, none lost (fire_all caught up on the failover gaps).
    let runs = fired(conn, id);
    let slots: Vec<DateTime<Utc>> = runs.iter().map(|(slot, _, _)| *slot).collect();
    assert!(slots.len() >= 35, "{} slots", slots.len());
    for pair in slots.windows(2) {
        assert_eq!(pair[1] - pair[0], Duration::seconds(1), "slots {} then {}", pair[0], pair[1]);
    }
    let jobs: BTreeSet<Uuid> = runs.iter().map(|(_, _, job)| job.expect("a fired run has a job")).collect();
    assert_eq!(jobs.len(), slots.len(), "one job per slot");

    // The broker got exactly those jobs: one message id per slot. (A job
    // the killed leader published but had not marked may be published
    // again by a survivor, with the same id: consumers are idempotent.)
    let broker = stockflow_testkit::broker::connect().await;
    let channel = broker.create_channel().await.unwrap();
    let queue = format!("{}.maintenance", env.env.get("AMQP_NAMESPACE").unwrap());
    let mut by_id: BTreeMap<Uuid, String> = BTreeMap::new();
    let mut deliveries = 0;
    while let Some(message) = channel.basic_get(queue.as_str().into(), BasicGetOptions { no_ack: true }).await.unwrap()
    {
        deliveries += 1;
        let envelope: serde_json::Value = serde_json::from_slice(&message.delivery.data).unwrap();
        let job: Uuid = envelope["id"].as_str().unwrap().parse().unwrap();
        let correlation = envelope["correlation_id"].as_str().unwrap().to_owned();
        if let Some(before) = by_id.insert(job, correlation.clone()) {
            assert_eq!(before, correlation, "one id, one slot");
        }
    }
    let consumed: BTreeSet<Uuid> = by_id.keys().copied().collect();
    assert_eq!(consumed, jobs, "{deliveries} deliveries");
    let slots_on_broker: BTreeSet<&String> = by_id.values().collect();
    assert_eq!(slots_on_broker.len(), slots.len(), "each slot's correlation id once");
}
