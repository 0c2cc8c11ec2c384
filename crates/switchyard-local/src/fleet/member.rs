//! A local cluster's side of a fleet ([`FleetMember`]): it takes the change the fleet gave it,
//! rolls it with the engine, and publishes what the fleet judges.

use std::sync::Arc;
use std::time::Duration;

use sqlx::mysql::MySqlConnectOptions;
use sqlx::{ConnectOptions as _, Connection as _};
use switchyard_plan::Policy;
use switchyard_plan::engine::{ClusterRuntime as _, Engine, StepOutcome};
use switchyard_plan::fleet::{ClusterObservation, ClusterRollout, UserCheck};
use switchyard_plan::topology::{Health, Observed};

use super::MemberChange;
use crate::cluster::{Apply, LocalCluster};
use crate::error::Result;
use crate::runtime::LocalRuntime;

/// How long the user check may take before it counts as not answering.
pub const USER_CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// How often an idle member looks for a change the fleet newly gave it.
pub const PICKUP: Duration = Duration::from_millis(20);

/// How often a member publishes the health right after a rollout ended.
pub const FOLLOW_UP: Duration = Duration::from_millis(20);

/// One local cluster in a fleet, run by the process that runs the cluster: each
/// [`FleetMember::step`] takes a change newly given by the fleet (a new revision in the
/// cluster's history and an engine toward it), takes one engine step, and publishes the
/// cluster's rollout and health in its state file for the fleet's driver.
///
/// A new member over the same cluster (the process restarted) picks up where the last one
/// stopped: the change is in the state file, the revision in the history (the same content
/// gives the same revision), and the engine's record in the state file.
pub struct FleetMember {
    cluster: Arc<LocalCluster>,
    runtime: LocalRuntime,
    policy: Policy,
    engine: Option<(String, Engine<LocalRuntime>)>,
    /// Whether the last engine step failed (the next one waits a pause).
    failed: bool,
}

impl std::fmt::Debug for FleetMember {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FleetMember")
            .field("cluster", &self.cluster)
            .field("change", &self.engine.as_ref().map(|(c, _)| c))
            .finish_non_exhaustive()
    }
}

impl FleetMember {
    /// The fleet's side of `cluster`, whose engine rolls with `policy`.
    pub fn new(cluster: Arc<LocalCluster>, policy: Policy) -> FleetMember {
        FleetMember {
            runtime: LocalRuntime::new(&cluster),
            cluster,
            policy,
            engine: None,
            failed: false,
        }
    }

    /// One step: take a change newly given, take one engine step toward it, observe the
    /// cluster, run the user check, and publish what was seen. Returns what was published.
    pub async fn step(&mut self) -> Result<ClusterObservation> {
        let given = self.cluster.state().read()?.cluster.fleet.change;
        if let Some(given) = &given {
            self.take(given)?;
        }
        self.failed = false;
        let rollout = match &self.engine {
            None => ClusterRollout::Done,
            Some((change, engine)) => match engine.step().await {
                Ok(StepOutcome::Done) => ClusterRollout::Done,
                Ok(StepOutcome::Halted(reason)) => ClusterRollout::Halted {
                    reason: reason.to_string(),
                },
                Ok(_) => ClusterRollout::Rolling,
                Err(e) => {
                    tracing::warn!(%change, error = %e, "the engine's step failed");
                    self.failed = true;
                    ClusterRollout::Rolling
                }
            },
        };
        let observed =
            self.runtime.observe().await.map_err(|e| {
                crate::Error::Invalid(format!("could not observe the cluster: {e}"))
            })?;
        let user_check = match given.as_ref().and_then(|g| g.check.as_deref()) {
            Some(query) => self.user_check(query).await,
            None => UserCheck::NotConfigured,
        };
        let (replication_running, lag_seconds) = replication(&observed);
        let seen = ClusterObservation {
            change: self.engine.as_ref().map(|(c, _)| c.clone()),
            rollout,
            replication_running,
            lag_seconds,
            user_check,
            observed_at: self.runtime.now(),
        };
        let published = seen.clone();
        self.cluster.state().update_cluster(|c| {
            c.fleet.status = Some(published);
            Ok(())
        })?;
        Ok(seen)
    }

    /// Steps until `stop` says so; a failed step is logged and tried again. While a change
    /// rolls the next step follows at once, as `Engine::run` would (the engine's own waits
    /// pace it): a pause of `every` between the steps of a rollout would lengthen every
    /// cluster's rollout by one pause per step. Otherwise (nothing to roll, done, halted, a
    /// failed step) it steps every `every`, publishing the cluster's health for the bake.
    pub async fn run(&mut self, every: Duration, stop: &tokio::sync::watch::Receiver<bool>) {
        let mut stop = stop.clone();
        // When the last rollout ended: for one `every` after it, the health is published
        // every [`FOLLOW_UP`], so that the fleet's bake (which needs an observation made
        // after the driver saw the rollout done) starts and ends without waiting a whole
        // `every`.
        let mut finished: Option<tokio::time::Instant> = None;
        while !*stop.borrow() {
            let rolling = match self.step().await {
                Ok(seen) => seen.rollout == ClusterRollout::Rolling && !self.failed,
                Err(e) => {
                    tracing::warn!(error = %e, "a fleet member's step failed");
                    false
                }
            };
            if rolling {
                finished = None;
                continue;
            }
            let now = tokio::time::Instant::now();
            let since = *finished.get_or_insert(now);
            let pause = if now.duration_since(since) < every {
                FOLLOW_UP.min(every)
            } else {
                every
            };
            self.idle(pause, &mut stop).await;
        }
    }

    /// Waits up to `every` (or until `stop`), looking at the state file every
    /// [`PICKUP`] for a change the fleet newly gave: a new change is taken up within
    /// [`PICKUP`] instead of a whole `every` (which paces the health this member publishes
    /// for the bake, with its observation of every instance).
    async fn idle(&self, every: Duration, stop: &mut tokio::sync::watch::Receiver<bool>) {
        let until = tokio::time::Instant::now() + every;
        loop {
            let left = until.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return;
            }
            if tokio::time::timeout(left.min(PICKUP), stop.changed())
                .await
                .is_ok()
            {
                return;
            }
            let given = self
                .cluster
                .state()
                .read()
                .ok()
                .and_then(|d| d.cluster.fleet.change)
                .map(|c| c.change);
            if given.is_some() && given.as_ref() != self.engine.as_ref().map(|(c, _)| c) {
                return;
            }
        }
    }

    /// A new engine when the fleet gave a change this member does not roll yet.
    fn take(&mut self, given: &MemberChange) -> Result<()> {
        if self.engine.as_ref().map(|(c, _)| c) == Some(&given.change) {
            return Ok(());
        }
        let set: Vec<(&str, &str)> = given
            .config
            .set
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let apply = if given.config.restart {
            Apply::Restart
        } else {
            Apply::Online
        };
        let target = self.cluster.config_target(&set, apply)?;
        let engine = Engine::new(
            LocalRuntime::new(&self.cluster),
            target,
            self.policy.clone(),
        );
        self.engine = Some((given.change.clone(), engine));
        Ok(())
    }

    /// Runs the user's query as the application account through the primary endpoint.
    async fn user_check(&self, query: &str) -> UserCheck {
        let addr = self.cluster.router().primary_addr();
        let app = &self.cluster.credentials().application;
        let options = MySqlConnectOptions::new()
            .host(&addr.ip().to_string())
            .port(addr.port())
            .username(app.user())
            .password(app.password())
            .database(switchyard_testbed::APP_DATABASE);
        let run = async {
            let mut conn = options.connect().await?;
            // The user's own query, run as the user gave it, with the application's rights.
            let answered = sqlx::query(sqlx::AssertSqlSafe(query.to_owned()))
                .fetch_all(&mut conn)
                .await;
            let _ = conn.close().await;
            answered.map(|_| ())
        };
        match tokio::time::timeout(USER_CHECK_TIMEOUT, run).await {
            Ok(Ok(())) => UserCheck::Answered,
            Ok(Err(e)) => UserCheck::Failed {
                message: e.to_string(),
            },
            Err(_) => UserCheck::Failed {
                message: format!("no answer within {USER_CHECK_TIMEOUT:?}"),
            },
        }
    }
}

/// Whether every replica replicates from the primary, and the largest lag in seconds (`None`
/// without a replica).
fn replication(observed: &Observed) -> (bool, Option<u64>) {
    let Some(primary) = observed.primary() else {
        return (false, None);
    };
    let mut running = true;
    let mut lag: Option<u64> = None;
    for i in observed
        .instances
        .iter()
        .filter(|i| i.ordinal != primary.ordinal)
    {
        running &= i.replicates_from(primary.ordinal);
        let seconds = match i.health {
            Health::Lagging { seconds } => seconds,
            _ => 0,
        };
        lag = Some(lag.map_or(seconds, |l| l.max(seconds)));
    }
    (running, lag)
}
