//! An in-memory model cluster implementing `ClusterRuntime`, with faults fired
//! at chosen runtime calls and invariants checked after every call and every
//! tick of its clock.
//!
//! The model keeps what the guarantees depend on:
//! - **asynchronous replication with a delay the test controls**: a replica
//!   applies its source's binary log in order, each transaction once it is
//!   `delay` old, so catching up costs model time;
//! - **GTID sets**: every transaction carries its origin's id and sequence
//!   (MySQL: one UUID per instance; MariaDB: one domain per instance, so a
//!   position is exact), and errant transactions are possible;
//! - **fences as the servers have them**: `read_only` (MySQL adds
//!   `super_read_only`) and, on MariaDB, a lock held by the engine's
//!   connection, which dies with the engine (or on its own: `FenceLost`) while
//!   `read_only` stays; on MariaDB `read_only` does not stop a privileged
//!   client;
//! - **clients**: the application writes through the runtime's primary
//!   endpoint (the instance its bookkeeping calls primary), and optionally a
//!   privileged client connected directly to the first primary writes
//!   whenever that server takes its commit and is not configured as a
//!   replica (a commit on a replica is an errant transaction: `ErrantWrite`);
//! - **several engines**: each has its own handle and identity, a lease says
//!   which one may act (a deposed engine keeps running beside its successor),
//!   and a killed engine's calls fail.
//!
//! "Writable" means "takes a privileged client's commit": the one-writer
//! check counts every instance that does and is not configured as a replica.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use switchyard_plan::engine::{ClusterRuntime, RuntimeError, RuntimeErrorKind};
use switchyard_plan::gtid::GtidSet;
use switchyard_plan::record::{Intent, Record};
use switchyard_plan::topology::{
    Health, Instance, Link, Observed, Revision, Role, Timestamp, TopologyKind,
};
use switchyard_plan::versions::{Flavor, Version, catalog};
use switchyard_plan::{SchemaTarget, WaitReason};

/// Where a killed engine dies relative to the call it was making.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KillAt {
    /// Before the call takes effect.
    Before,
    /// Inside the call: a restart leaves the instance down (the supervisor
    /// starts it later on the revision the runtime recorded); a promotion
    /// leaves the candidate writable with its bookkeeping not moved. Other
    /// calls take effect.
    Inside,
    /// After the call took effect, before the engine could record it.
    After,
}

/// A fault the test injects.
#[derive(Clone, Debug)]
pub enum Fault {
    /// The instance crashes; recovery fails until `down_for` has passed.
    Crash { ordinal: u32, down_for: Duration },
    /// The instance's next restart fails to start it (it is left crashed).
    RestartFails { ordinal: u32 },
    /// Replication on the instance stops with an error for `lasting`.
    ReplicationError { ordinal: u32, lasting: Duration },
    /// The instance's replication delay is `seconds` for `lasting`.
    Lag {
        ordinal: u32,
        seconds: u64,
        lasting: Duration,
    },
    /// The engine making the call dies.
    KillEngine { at: KillAt },
    /// The connection holding a fence's lock dies (MariaDB); `read_only` stays.
    FenceLost { ordinal: u32 },
    /// A privileged client commits directly on the instance, if it lets it
    /// (a MariaDB replica does; MySQL's `super_read_only` does not).
    ErrantWrite { ordinal: u32 },
    /// The next `times` promotions make the candidate writable, then fail
    /// before the runtime moves its traffic and bookkeeping.
    PromoteFailsAfterWritable { times: u32 },
    /// The next store of the record takes effect, then reports a failure.
    RecordWriteFails,
    /// The next call of this kind (`promote`, `repoint`, `fence`, `demote`,
    /// `unfence`, `undrain`) takes full effect, then reports a failure.
    FailsAfterEffect { call: &'static str },
    /// The leading engine loses its lease and runs on beside a new leader for
    /// `steps` steps.
    Depose { steps: u32 },
    /// The instance's process is stopped (SIGSTOP) for `lasting`: it answers
    /// nobody, serves no replica and commits nothing, then goes on as it was.
    Freeze { ordinal: u32, lasting: Duration },
    /// The operator cannot reach the instance for `lasting`; its clients and
    /// replicas still can.
    CutOperator { ordinal: u32, lasting: Duration },
}

impl Fault {
    /// Whether a run may end halted because of this fault (a person must
    /// look at transactions written where they should not have been).
    pub fn may_halt(&self) -> bool {
        matches!(self, Fault::ErrantWrite { .. })
    }
}

/// A transaction: (origin instance, sequence number on that origin).
type WriteId = (u32, u64);

#[derive(Clone, Debug)]
struct MInstance {
    ordinal: u32,
    version: Version,
    revision: Revision,
    /// The runtime's bookkeeping: where client writes go.
    role: Role,
    up: bool,
    crashed: bool,
    /// The runtime call during which it crashed.
    crashed_at_op: u64,
    recover_after: u64,
    /// Started again by the supervisor at this time (killed mid-restart).
    back_at: Option<u64>,
    restart_fails: bool,
    /// `read_only`, and `super_read_only` on MySQL.
    read_only: bool,
    /// The fence holds against every client (MariaDB: the engine's lock;
    /// MySQL: `super_read_only`, which survives everything).
    lock: bool,
    /// The engine whose connection holds the lock (MariaDB).
    lock_by: u32,
    /// The runtime's bookkeeping of the fence.
    fenced: bool,
    /// A fault took its fence's lock during the engine step this counts
    /// (the number of steps begun then): until the first action of a later
    /// step, a commit that reaches it is one the engine could not prevent
    /// (it must be reported, never lost silently).
    exposed: Option<u64>,
    drained: bool,
    /// The configured replication source.
    source: Option<u32>,
    /// Whether the replication threads run.
    applying: bool,
    /// Received (by the I/O thread) and not applied yet: (transaction, when
    /// it was committed on its source).
    relay: VecDeque<(WriteId, u64)>,
    /// The receiver was stopped (a failover's isolation).
    detached: bool,
    /// Frozen (SIGSTOP) until then: it answers nobody and serves no replica.
    frozen_until: u64,
    /// Cut off from the operator (not from clients or replicas) until then.
    cut_until: u64,
    /// Position in the source's log up to which everything was considered.
    cursor: usize,
    repl_error_until: u64,
    /// Extra replication delay of a `Lag` fault, and when it ends.
    lag_ms: u64,
    lag_until: u64,
    /// Committed here, in order, with the time of the commit here.
    log: Vec<(WriteId, u64)>,
    executed: BTreeSet<WriteId>,
    next_seq: u64,
    altered: bool,
}

impl MInstance {
    /// Stopped (SIGSTOP) now.
    fn frozen(&self, now: u64) -> bool {
        self.frozen_until > now
    }

    /// Up and running (not frozen): it answers its clients and replicas.
    fn serves(&self, now: u64) -> bool {
        self.up && !self.frozen(now)
    }

    /// Whether it holds `id`: executed, or received and waiting in its relay log.
    fn has(&self, id: &WriteId) -> bool {
        self.executed.contains(id) || self.relay.iter().any(|(r, _)| r == id)
    }

    /// Forgets what its relay log held (a reconfiguration of its source, a
    /// promotion, a crash): what it did not apply is fetched again from its
    /// source, if the source has it.
    fn reset_relay(&mut self) {
        self.relay.clear();
        self.cursor = 0;
    }
}

/// An engine's lease: from when, until when, and the latest time it
/// confirmed it would still act (renewals keep the lease at least that long).
#[derive(Clone, Copy, Debug)]
struct Grant {
    from: u64,
    until: u64,
    confirmed: u64,
}

struct State {
    clock: u64,
    flavor: Flavor,
    instances: Vec<MInstance>,
    record: Record,
    /// Writes acknowledged to a client that must never be lost.
    acknowledged: BTreeSet<WriteId>,
    /// Transactions a privileged client wrote on replicas (faults), with the
    /// runtime call during which each was written.
    errant: BTreeMap<WriteId, u64>,
    /// Errant transactions each engine saw on a replica while the writable
    /// primary answered (and lacked them), by engine.
    errant_seen: BTreeMap<u32, BTreeSet<WriteId>>,
    /// Errant transactions an engine saw beside the primary and then stored
    /// a record: a failover, which cannot see the primary, knows of them.
    errant_known: BTreeSet<WriteId>,
    /// Writes acknowledged by a server whose fence a fault had just taken.
    exposed: BTreeSet<WriteId>,
    out_by_us: BTreeSet<u32>,
    /// Faults by the runtime call (counted over every engine) they fire at.
    schedule: Vec<(u64, Fault)>,
    fired: Vec<(u64, u64, Fault)>,
    promote_fails: u32,
    /// A call kind armed to fail after its effect.
    fails_after: Option<&'static str>,
    record_write_fails: bool,
    /// Engines killed, by id; engines deposed, with the steps left.
    dead: BTreeSet<u32>,
    deposed_request: Option<u32>,
    grants: BTreeMap<u32, Grant>,
    leader: u32,
    /// When a deposed engine (running on beside the leader) last made a call.
    deposed_call_at: Option<u64>,
    violations: Vec<String>,
    /// Engine steps begun (each begins by loading the record).
    steps: u64,
    /// A promotion call is under way.
    promoting: bool,
    /// The engine making the current call.
    caller: u32,
    /// Each engine's latest observation, by runtime call.
    observed_at: BTreeMap<u32, u64>,
    /// Every runtime call and fault, for the trace of a failed case.
    oplog: Vec<String>,
    ops: u64,
    base_delay: u64,
    privileged_writer: Option<u32>,
    /// The clients stopped (the end of a run).
    clients_stopped: bool,
    /// How many replicas must have received a commit before its client is
    /// answered (semi-synchronous, after the sync); `None`: asynchronous.
    ack_replicas: Option<u32>,
    /// Commits waiting for their acknowledgements (semi-synchronous).
    pending: BTreeMap<WriteId, Pending>,
    /// Whether a failover may lose acknowledged writes (the policy accepts it).
    accept_data_loss: bool,
    /// Acknowledged writes a failover accepted to lose (the candidate lacked
    /// them): they must stay on an instance the record quarantines.
    accepted_loss: BTreeSet<WriteId>,
    /// Commits in flight on a failed primary when a failover that was not
    /// lossless promoted another: a replica it could not isolate may still
    /// acknowledge them once the failed primary comes back, and a loss of
    /// them is part of what the policy accepted (a lossless failover
    /// isolated enough replicas that none can be).
    at_risk: BTreeSet<WriteId>,
    /// Instances a failover drained because they could not follow the new
    /// primary yet (out by the failure, not by a rollout's step).
    failover_out: BTreeSet<u32>,
    /// Acknowledged writes a replica had received and not applied when a
    /// crash or a change of its source discarded its relay log: a failover
    /// that loses one of them lost it to two faults (the primary's and this
    /// one), which no rule can prevent.
    relay_discarded: BTreeSet<WriteId>,
    no_writer_since: Option<u64>,
    /// The schema change being rolled, if any: (id, whether the primary may take it in place).
    schema: Option<(String, bool)>,
}

/// A commit waiting for its semi-synchronous acknowledgements.
#[derive(Clone, Copy, Debug)]
struct Pending {
    /// Made by the privileged client rather than the application.
    privileged: bool,
    /// A fault had just taken its server's fence (see `MInstance::exposed`).
    exposed: bool,
    /// Replicas that received it from its server.
    acks: u32,
}

/// The model cluster.
pub struct Model {
    state: Mutex<State>,
}

/// How the model cluster starts.
#[derive(Clone, Debug)]
pub struct Setup {
    pub flavor: Flavor,
    pub versions: Vec<Version>,
    pub primary: u32,
    /// The schema change being rolled, if any: (id, whether the primary may take it in place).
    pub schema: Option<(String, bool)>,
    /// How long a transaction takes to reach a replica.
    pub replication_delay: Duration,
    /// Whether a privileged client writes directly to the first primary.
    pub privileged_writer: bool,
    /// Semi-synchronous replication: a commit is acknowledged once half the
    /// replicas (rounded up) received it; otherwise asynchronous.
    pub semi_sync: bool,
    /// The failover policy accepts losing acknowledged writes.
    pub accept_data_loss: bool,
}

/// The revision an instance on `version` runs before the rollout.
pub fn revision_for(flavor: Flavor, version: Version) -> Revision {
    Revision::new(1, flavor, version, &BTreeMap::new())
}

/// How long the cluster may have no writable primary outside a switchover
/// and a fault (a primary that started read-only waits for the engine).
const NO_WRITER_GRACE_MS: u64 = 3_000;
/// How long after a switchover's deadline its undo may take.
const UNDO_GRACE_MS: u64 = 3_000;
/// How long the supervisor takes to start an instance whose restart was cut short.
const SUPERVISOR_START_MS: u64 = 2_000;

impl Model {
    pub fn new(setup: &Setup) -> Self {
        let instances = setup
            .versions
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let ordinal = u32::try_from(i).expect("small");
                let primary = ordinal == setup.primary;
                MInstance {
                    ordinal,
                    version: *v,
                    revision: revision_for(setup.flavor, *v),
                    role: if primary {
                        Role::Primary
                    } else {
                        Role::Replica
                    },
                    up: true,
                    crashed: false,
                    crashed_at_op: 0,
                    recover_after: 0,
                    back_at: None,
                    restart_fails: false,
                    read_only: !primary,
                    lock: false,
                    lock_by: 0,
                    fenced: false,
                    exposed: None,
                    drained: false,
                    source: (!primary).then_some(setup.primary),
                    applying: !primary,
                    relay: VecDeque::new(),
                    detached: false,
                    frozen_until: 0,
                    cut_until: 0,
                    cursor: 0,
                    repl_error_until: 0,
                    lag_ms: 0,
                    lag_until: 0,
                    log: Vec::new(),
                    executed: BTreeSet::new(),
                    next_seq: 0,
                    altered: false,
                }
            })
            .collect();
        let mut grants = BTreeMap::new();
        grants.insert(
            0,
            Grant {
                from: 0,
                until: u64::MAX,
                confirmed: 0,
            },
        );
        Model {
            state: Mutex::new(State {
                clock: 1_000_000,
                flavor: setup.flavor,
                instances,
                record: Record::default(),
                acknowledged: BTreeSet::new(),
                errant: BTreeMap::new(),
                errant_seen: BTreeMap::new(),
                errant_known: BTreeSet::new(),
                exposed: BTreeSet::new(),
                out_by_us: BTreeSet::new(),
                schedule: Vec::new(),
                fired: Vec::new(),
                promote_fails: 0,
                fails_after: None,
                record_write_fails: false,
                dead: BTreeSet::new(),
                deposed_request: None,
                grants,
                leader: 0,
                deposed_call_at: None,
                violations: Vec::new(),
                steps: 0,
                promoting: false,
                caller: 0,
                observed_at: BTreeMap::new(),
                oplog: Vec::new(),
                ops: 0,
                base_delay: ms(setup.replication_delay),
                privileged_writer: setup.privileged_writer.then_some(setup.primary),
                clients_stopped: false,
                ack_replicas: (setup.semi_sync && setup.versions.len() > 1)
                    .then(|| u32::try_from(setup.versions.len()).expect("small") / 2),
                pending: BTreeMap::new(),
                accept_data_loss: setup.accept_data_loss,
                accepted_loss: BTreeSet::new(),
                at_risk: BTreeSet::new(),
                failover_out: BTreeSet::new(),
                relay_discarded: BTreeSet::new(),
                no_writer_since: None,
                schema: setup.schema.clone(),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("model lock")
    }

    /// Schedules `faults`, each at the runtime call (counted from the start,
    /// over every engine) it fires at.
    pub fn schedule(&self, mut faults: Vec<(u64, Fault)>) {
        faults.sort_by_key(|(at, _)| *at);
        self.lock().schedule = faults;
    }

    /// Applies a fault now.
    pub fn inject(&self, fault: &Fault) {
        let mut s = self.lock();
        s.fire(fault.clone(), None);
        s.check("fault");
    }

    /// The faults that fired: (runtime call, model time, fault).
    pub fn fired(&self) -> Vec<(u64, u64, Fault)> {
        self.lock().fired.clone()
    }

    /// Faults not fired yet.
    pub fn pending_faults(&self) -> usize {
        self.lock().schedule.len()
    }

    pub fn clock(&self) -> u64 {
        self.lock().clock
    }

    /// Runtime calls made so far.
    pub fn ops(&self) -> u64 {
        self.lock().ops
    }

    /// A handle for the engine `id` (its own connections and identity).
    pub fn handle(self: &Arc<Self>, id: u32) -> Handle {
        Handle {
            model: Arc::clone(self),
            id,
        }
    }

    /// Whether the engine `id` was killed.
    pub fn is_dead(&self, id: u32) -> bool {
        self.lock().dead.contains(&id)
    }

    /// A new engine `id` replaces the killed leader: it holds the lease now.
    pub fn replace_leader(&self, id: u32) {
        let mut s = self.lock();
        let now = s.clock;
        let old = s.leader;
        s.grants.remove(&old);
        s.grants.insert(
            id,
            Grant {
                from: now,
                until: u64::MAX,
                confirmed: now,
            },
        );
        s.leader = id;
    }

    /// A `Depose` fault fired: how many steps the deposed engine runs on.
    pub fn take_depose(&self) -> Option<u32> {
        self.lock().deposed_request.take()
    }

    /// The leader `old` stops renewing its lease: it ends now, or at the
    /// latest time `old` confirmed it would act (renewals covered that), and
    /// `new` may act only after it ended.
    pub fn depose(&self, old: u32, new: u32) {
        let mut s = self.lock();
        let now = s.clock;
        let ends = match s.grants.get_mut(&old) {
            Some(g) => {
                g.until = now.max(g.confirmed);
                g.until
            }
            None => now,
        };
        s.grants.insert(
            new,
            Grant {
                from: ends + 1,
                until: u64::MAX,
                confirmed: ends + 1,
            },
        );
        s.leader = new;
    }

    /// Ends every lasting fault: crashed instances may be recovered, restarts
    /// succeed, replication errors and lag clear; scheduled faults are dropped.
    pub fn heal(&self) {
        let mut s = self.lock();
        let now = s.clock;
        for i in &mut s.instances {
            i.recover_after = i.recover_after.min(now);
            i.restart_fails = false;
            i.repl_error_until = 0;
            i.lag_until = 0;
            i.frozen_until = i.frozen_until.min(now);
            i.cut_until = i.cut_until.min(now);
        }
        s.schedule.clear();
        s.promote_fails = 0;
        s.fails_after = None;
        s.record_write_fails = false;
    }

    /// Whether a fault that fired still holds an instance: hung, cut off,
    /// starting, or crashed and not recoverable yet (`heal` would end it at
    /// once).
    pub fn faults_in_force(&self) -> bool {
        let s = self.lock();
        let now = s.clock;
        s.instances.iter().any(|i| {
            i.frozen_until > now
                || i.cut_until > now
                || i.back_at.is_some_and(|t| t > now)
                || (i.crashed && i.recover_after > now)
        })
    }

    /// Lets time pass and replication and clients run (a tick of the world).
    pub fn tick(&self, d: Duration) {
        let mut s = self.lock();
        s.advance(ms(d));
        s.check("tick");
    }

    /// Every instance's state, for the trace of a failed case.
    pub fn dump(&self) -> String {
        let s = self.lock();
        s.instances
            .iter()
            .map(|i| {
                format!(
                    "instance {}: {:?} {} up={} crashed={} read_only={} lock={} fenced={} \
                     source={:?} applying={} detached={} relay={} frozen_until={} cut_until={} \
                     cursor={} log={} executed={} repl_error_until={} lag_until={}",
                    i.ordinal,
                    i.role,
                    i.version,
                    i.up,
                    i.crashed,
                    i.read_only,
                    i.lock,
                    i.fenced,
                    i.source,
                    i.applying,
                    i.detached,
                    i.relay.len(),
                    i.frozen_until,
                    i.cut_until,
                    i.cursor,
                    i.log.len(),
                    i.executed.len(),
                    i.repl_error_until,
                    i.lag_until
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The runtime calls and faults so far.
    pub fn oplog(&self) -> Vec<String> {
        self.lock().oplog.clone()
    }

    pub fn violations(&self) -> Vec<String> {
        self.lock().violations.clone()
    }

    /// Checks what can only be checked at the end, once replication has
    /// converged with the faults over: no acknowledged write missing on the
    /// primary, and every instance that replicates has everything the primary
    /// has. With `finished`, every instance replicates from the primary.
    pub fn final_check(&self, finished: bool, halted_on: &[u32]) -> Vec<String> {
        self.heal();
        let mut s = self.lock();
        s.clients_stopped = true;
        s.advance(30_000);
        let mut out = s.violations.clone();
        let Some(p) = s.instances.iter().find(|i| i.role == Role::Primary) else {
            out.push("no primary at the end".into());
            return out;
        };
        let quarantined: Vec<&MInstance> = s
            .instances
            .iter()
            .filter(|i| s.record.quarantined.contains_key(&i.ordinal))
            .collect();
        let missing: Vec<WriteId> = s
            .acknowledged
            .difference(&p.executed)
            .filter(|id| !s.accepted_loss.contains(id))
            .copied()
            .collect();
        // A failover allowed to lose writes lost them from service, not from
        // the world: they stay on a quarantined instance for a person.
        let dropped: Vec<WriteId> = s
            .accepted_loss
            .iter()
            .filter(|id| {
                !p.executed.contains(id) && !quarantined.iter().any(|q| q.executed.contains(id))
            })
            .copied()
            .collect();
        if finished && !dropped.is_empty() {
            out.push(format!(
                "{} writes a failover accepted to lose are on no quarantined instance (first {:?})",
                dropped.len(),
                dropped.first()
            ));
        }
        if !missing.is_empty() {
            out.push(format!(
                "the primary {} is missing {} acknowledged writes (first {:?})",
                p.ordinal,
                missing.len(),
                &missing[..missing.len().min(5)]
            ));
        }
        // Writes a server took while a fault had just taken its fence: the
        // engine could not prevent them, but it must not lose them silently:
        // on the primary, or the rollout did not say done (a halt that names
        // an instance names the one holding them).
        let lost: Vec<WriteId> = s.exposed.difference(&p.executed).copied().collect();
        if !lost.is_empty() {
            let named_holds_them = halted_on
                .iter()
                .filter_map(|o| s.inst(*o))
                .any(|i| lost.iter().all(|id| i.executed.contains(id)));
            let holder = s
                .instances
                .iter()
                .find(|i| lost.iter().all(|id| i.executed.contains(id)))
                .map(|i| i.ordinal);
            let quarantine_holds_them = quarantined
                .iter()
                .any(|q| lost.iter().all(|id| q.executed.contains(id)));
            // Lost silently: the rollout said done, or halted naming another,
            // and no quarantine keeps them.
            let silent = !quarantine_holds_them
                && (finished || (!halted_on.is_empty() && !named_holds_them));
            if silent {
                out.push(format!(
                    "{} writes acknowledged while a fence was lost are missing on the primary \
                     and no halt names the instance holding them ({holder:?}): first {:?}",
                    lost.len(),
                    &lost[..lost.len().min(5)]
                ));
            }
        }
        // With the faults over, no replica receives from a primary that was
        // failed over: it would acknowledge what that one had in flight.
        for i in &s.instances {
            let Some(f) = i.source.filter(|f| s.record.failed_over.contains(f)) else {
                continue;
            };
            if i.up && i.applying && !i.detached && s.inst(f).is_some_and(|f| f.up) {
                out.push(format!(
                    "instance {} still receives from {f}, a primary that was failed over",
                    i.ordinal
                ));
            }
        }
        for i in &s.instances {
            let follows = i.up && i.applying && !i.detached && i.source == Some(p.ordinal);
            let quarantined = s.record.quarantined.contains_key(&i.ordinal);
            if i.ordinal == p.ordinal || quarantined || !(follows || finished) {
                continue;
            }
            let lacking = p.executed.difference(&i.executed).count();
            if lacking > 0 {
                out.push(format!(
                    "instance {} lacks {lacking} of the primary's transactions at the end \
                     (source {:?}, applying {})",
                    i.ordinal, i.source, i.applying
                ));
            }
        }
        out
    }

    /// Whether the cluster has a primary that takes writes, or whose primary
    /// is down.
    pub fn has_writer_or_primary_down(&self) -> bool {
        let s = self.lock();
        s.instances
            .iter()
            .any(|i| i.role == Role::Primary && (!i.up || s.app_writable(i)))
    }

    pub fn versions(&self) -> Vec<Version> {
        self.lock().instances.iter().map(|i| i.version).collect()
    }

    /// Which instances have the schema change, by ordinal.
    pub fn altered(&self) -> Vec<bool> {
        self.lock().instances.iter().map(|i| i.altered).collect()
    }

    pub fn record(&self) -> Record {
        self.lock().record.clone()
    }

    pub fn acknowledged(&self) -> usize {
        self.lock().acknowledged.len()
    }

    /// Writes taken by a server whose fence a fault had just taken.
    pub fn exposed(&self) -> usize {
        self.lock().exposed.len()
    }

    /// One runtime call of engine `id`: fires due faults, handles the
    /// engine's death, advances the clock, runs `f`, checks the invariants.
    fn op<T>(
        &self,
        id: u32,
        what: &str,
        inside: impl FnOnce(&mut State),
        f: impl FnOnce(&mut State) -> Result<T, String>,
    ) -> Result<T, RuntimeError> {
        let acting = !(what == "observe" || what == "load record");
        let mut s = self.lock();
        if what == "load record" {
            s.steps += 1;
        }
        s.promoting = what.starts_with("promote");
        let now = s.clock;
        let named = named_ordinals(what);
        // The instances the call could reach (a hung or cut-off one it could not).
        let reached: Vec<u32> = s
            .instances
            .iter()
            .filter(|i| named.contains(&i.ordinal) && !i.frozen(now) && i.cut_until <= now)
            .map(|i| i.ordinal)
            .collect();
        let result = s.call(id, what, inside, f);
        s.promoting = false;
        // An engine acted on the server in a step begun after its fence was
        // lost: it is the engine's business again from the end of this call
        // (only if the call took effect: one refused, e.g. past its
        // deadline, changed nothing).
        if acting && result.is_ok() && !s.dead.contains(&id) {
            let steps = s.steps;
            for i in &mut s.instances {
                if reached.contains(&i.ordinal) && i.exposed.is_some_and(|at| at < steps) {
                    i.exposed = None;
                }
            }
        }
        result
    }
}

impl State {
    fn call<T>(
        &mut self,
        id: u32,
        what: &str,
        inside: impl FnOnce(&mut State),
        f: impl FnOnce(&mut State) -> Result<T, String>,
    ) -> Result<T, RuntimeError> {
        let s = self;
        s.caller = id;
        if id != s.leader && !s.dead.contains(&id) {
            s.deposed_call_at = Some(s.clock);
        }
        let line = format!("t={} call {} engine {id}: {what}", s.clock, s.ops + 1);
        s.oplog.push(line);
        if s.dead.contains(&id) {
            return Err(RuntimeError::new(
                RuntimeErrorKind::Transient,
                what,
                "the engine is dead",
            ));
        }
        s.ops += 1;
        let mut kill = None;
        while s.schedule.first().is_some_and(|(at, _)| *at <= s.ops) {
            let (_, fault) = s.schedule.remove(0);
            if let Fault::KillEngine { at } = fault {
                s.record_fired(fault.clone());
                kill = Some(at);
            } else {
                s.fire(fault, Some(id));
            }
        }
        s.advance(100);
        if kill == Some(KillAt::Before) {
            s.kill_engine(id);
            s.check(what);
            return Err(killed(what));
        }
        if kill == Some(KillAt::Inside) {
            inside(s);
            s.kill_engine(id);
            s.check(what);
            return Err(killed(what));
        }
        let result = f(s);
        s.advance(100);
        s.check(what);
        if kill == Some(KillAt::After) {
            s.kill_engine(id);
            return Err(killed(what));
        }
        if result.is_ok()
            && let Some(call) = s.fails_after
            && what.starts_with(call)
        {
            s.fails_after = None;
            return Err(RuntimeError::new(
                RuntimeErrorKind::Transient,
                what,
                "the call took effect, then its answer was lost",
            ));
        }
        result.map_err(|m| RuntimeError::new(RuntimeErrorKind::Failed, what, m))
    }
}

/// The instances a runtime call names, read from its description ("fence 0",
/// "wait for 1 to catch up with 0").
/// The instances a call reaches: the ordinals it names, but for `repoint 0
/// to 1` and `demote 1 under 0`, which name the second only as the source
/// to configure (the call connects to the first alone).
fn named_ordinals(what: &str) -> Vec<u32> {
    let ordinals = what.split_whitespace().filter_map(|w| w.parse().ok());
    if what.starts_with("repoint ") || what.starts_with("demote ") {
        ordinals.take(1).collect()
    } else {
        ordinals.collect()
    }
}

fn killed(what: &str) -> RuntimeError {
    RuntimeError::new(RuntimeErrorKind::Transient, what, "the engine was killed")
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A UUID for instance `o`'s transactions (MySQL).
fn uuid(o: u32) -> String {
    format!("{:08x}-0000-4000-8000-{:012x}", o + 1, o + 1)
}

impl State {
    fn record_fired(&mut self, fault: Fault) {
        let (ops, clock) = (self.ops, self.clock);
        self.oplog
            .push(format!("t={clock} call {ops}: FAULT {fault:?}"));
        self.fired.push((ops, clock, fault));
    }

    fn fire(&mut self, fault: Fault, _by: Option<u32>) {
        let now = self.clock;
        let steps = self.steps;
        self.record_fired(fault.clone());
        match fault {
            Fault::Crash { ordinal, down_for } => {
                let op = self.ops;
                if let Some(i) = self.inst_mut(ordinal)
                    && i.up
                {
                    i.up = false;
                    i.crashed = true;
                    i.crashed_at_op = op;
                    i.exposed = Some(steps);
                    i.lock = false;
                    i.recover_after = now + ms(down_for);
                    // Its clients' connections die: a commit still waiting
                    // for its acknowledgements was never acknowledged. What
                    // its relay log held is discarded when it starts again.
                    self.pending.retain(|id, _| id.0 != ordinal);
                    self.discard_relay(ordinal);
                }
            }
            Fault::RestartFails { ordinal } => {
                if let Some(i) = self.inst_mut(ordinal) {
                    i.restart_fails = true;
                }
            }
            Fault::ReplicationError { ordinal, lasting } => {
                if let Some(i) = self.inst_mut(ordinal) {
                    i.repl_error_until = now + ms(lasting);
                }
            }
            Fault::Lag {
                ordinal,
                seconds,
                lasting,
            } => {
                if let Some(i) = self.inst_mut(ordinal) {
                    i.lag_ms = seconds * 1000;
                    i.lag_until = now + ms(lasting);
                }
            }
            Fault::KillEngine { .. } => {
                let leader = self.leader;
                self.kill_engine(leader);
            }
            Fault::FenceLost { ordinal } => {
                if self.flavor == Flavor::Mariadb
                    && let Some(i) = self.inst_mut(ordinal)
                    && i.lock
                {
                    i.lock = false;
                    i.exposed = Some(steps);
                }
            }
            Fault::ErrantWrite { ordinal } => {
                let Some(idx) = self.instances.iter().position(|i| i.ordinal == ordinal) else {
                    return;
                };
                let i = &self.instances[idx];
                // Only a replica that applies from its source: a demoted old
                // primary's own commits are what its candidate catches up on.
                if i.up && i.source.is_some() && i.applying && self.takes_privileged(i) {
                    let id = self.commit(idx);
                    let op = self.ops;
                    self.errant.insert(id, op);
                }
            }
            Fault::PromoteFailsAfterWritable { times } => self.promote_fails = times,
            Fault::RecordWriteFails => self.record_write_fails = true,
            Fault::FailsAfterEffect { call } => self.fails_after = Some(call),
            Fault::Depose { steps } => self.deposed_request = Some(steps),
            Fault::Freeze { ordinal, lasting } => {
                if let Some(i) = self.inst_mut(ordinal) {
                    i.frozen_until = now + ms(lasting);
                }
            }
            Fault::CutOperator { ordinal, lasting } => {
                if let Some(i) = self.inst_mut(ordinal) {
                    i.cut_until = now + ms(lasting);
                }
            }
        }
    }

    /// The engine `id` dies: so does every connection it held, and with them
    /// every fence that is a lock (MariaDB); `read_only` stays.
    fn kill_engine(&mut self, id: u32) {
        let steps = self.steps;
        self.dead.insert(id);
        if self.flavor == Flavor::Mariadb {
            for i in &mut self.instances {
                if i.lock && i.lock_by == id {
                    i.lock = false;
                    i.exposed = Some(steps);
                }
            }
        }
    }

    fn inst_mut(&mut self, ordinal: u32) -> Option<&mut MInstance> {
        self.instances.iter_mut().find(|i| i.ordinal == ordinal)
    }

    fn inst(&self, ordinal: u32) -> Option<&MInstance> {
        self.instances.iter().find(|i| i.ordinal == ordinal)
    }

    /// Whether a privileged client's commit succeeds on `i`.
    fn takes_privileged(&self, i: &MInstance) -> bool {
        i.up && !i.lock && (self.flavor == Flavor::Mariadb || !i.read_only)
    }

    /// Whether the application's (unprivileged) commit succeeds on `i`.
    fn app_writable(&self, i: &MInstance) -> bool {
        i.up && !i.lock && !i.read_only
    }

    /// Commits a new transaction of instance `idx` (its own GTID).
    fn commit(&mut self, idx: usize) -> WriteId {
        let now = self.clock;
        let i = &mut self.instances[idx];
        i.next_seq += 1;
        let id = (i.ordinal, i.next_seq);
        i.log.push((id, now));
        i.executed.insert(id);
        id
    }

    fn advance(&mut self, millis: u64) {
        let steps = (millis / 100).max(1);
        for _ in 0..steps {
            self.clock += millis / steps;
            self.supervise();
            self.replicate();
            self.write();
        }
    }

    /// Starts instances whose restart was cut short, on the recorded revision.
    fn supervise(&mut self) {
        let now = self.clock;
        let steps = self.steps;
        for i in &mut self.instances {
            if i.back_at.is_some_and(|t| t <= now) {
                i.back_at = None;
                i.up = true;
                i.read_only = true;
                i.lock = false;
                i.applying = false;
                i.exposed = Some(steps);
            }
        }
    }

    /// Each replica's receiver copies its source's log into its relay log
    /// (skipping what it has: GTID auto-positioning), and acknowledges what
    /// its source waits for; its applier executes the relay log in order,
    /// every transaction once it is old enough.
    fn replicate(&mut self) {
        let now = self.clock;
        for idx in 0..self.instances.len() {
            let i = &self.instances[idx];
            let Some(src) = i.source else { continue };
            if !i.serves(now) || !i.applying {
                continue;
            }
            // Receive.
            let mut received = Vec::new();
            let mut cursor = i.cursor;
            if !i.detached
                && let Some(s) = self
                    .instances
                    .iter()
                    .find(|s| s.ordinal == src && s.serves(now))
            {
                cursor = cursor.min(s.log.len());
                while let Some((id, t)) = s.log.get(cursor) {
                    if !i.has(id) && !received.iter().any(|(r, _)| r == id) {
                        received.push((*id, *t));
                    }
                    cursor += 1;
                }
            }
            for (id, _) in &received {
                if id.0 == src
                    && let Some(p) = self.pending.get_mut(id)
                {
                    p.acks += 1;
                }
            }
            let delay = self.base_delay + if i.lag_until > now { i.lag_ms } else { 0 };
            let stopped = i.repl_error_until > now;
            let r = &mut self.instances[idx];
            r.cursor = cursor;
            r.relay.extend(received);
            // Apply.
            while !stopped
                && let Some((id, t)) = r.relay.front().copied()
                && t.saturating_add(delay) <= now
            {
                r.relay.pop_front();
                if r.executed.insert(id) {
                    r.log.push((id, now));
                }
            }
        }
        self.acknowledge();
    }

    /// Discards instance `o`'s relay log (see `MInstance::reset_relay`),
    /// remembering the acknowledged writes it held and had not applied.
    fn discard_relay(&mut self, o: u32) -> Vec<WriteId> {
        let Some(i) = self.inst(o) else {
            return Vec::new();
        };
        let lost: Vec<WriteId> = i
            .relay
            .iter()
            .map(|(id, _)| *id)
            .filter(|id| self.acknowledged.contains(id) && !i.executed.contains(id))
            .collect();
        self.relay_discarded.extend(lost.iter().copied());
        if let Some(i) = self.inst_mut(o) {
            i.reset_relay();
        }
        lost
    }

    /// Acknowledges the commits enough replicas received.
    fn acknowledge(&mut self) {
        let Some(k) = self.ack_replicas else { return };
        let done: Vec<(WriteId, Pending)> = self
            .pending
            .iter()
            .filter(|(_, p)| p.acks >= k)
            .map(|(id, p)| (*id, *p))
            .collect();
        for (id, p) in done {
            self.pending.remove(&id);
            if !p.exposed {
                self.acknowledged.insert(id);
                if self.at_risk.contains(&id) {
                    self.accepted_loss.insert(id);
                }
            }
        }
    }

    /// A commit is answered: at once (asynchronous), or once enough replicas
    /// received it (semi-synchronous).
    fn answer(&mut self, id: WriteId, privileged: bool, exposed: bool) {
        // A commit the engine could not prevent is on the server whether
        // or not its client was answered: it must be reported either way.
        if exposed {
            self.exposed.insert(id);
        }
        if self.ack_replicas.is_some() {
            self.pending.insert(
                id,
                Pending {
                    privileged,
                    exposed,
                    acks: 0,
                },
            );
        } else if !exposed {
            self.acknowledged.insert(id);
        }
    }

    /// Whether a client of instance `o` waits for an answer (one commit at a
    /// time per client).
    fn waiting(&self, o: u32, privileged: bool) -> bool {
        self.pending
            .iter()
            .any(|(id, p)| id.0 == o && p.privileged == privileged)
    }

    /// The application writes through the primary endpoint; the privileged
    /// client writes directly to its server.
    fn write(&mut self) {
        if self.clients_stopped {
            return;
        }
        let now = self.clock;
        if let Some(idx) = self.instances.iter().position(|i| {
            i.role == Role::Primary
                && !i.frozen(now)
                && self.app_writable(i)
                && !self.waiting(i.ordinal, false)
        }) {
            let id = self.commit(idx);
            self.answer(id, false, false);
        }
        // The privileged client writes to its server while that server may be
        // taken for a primary: it has no source, or it is the fenced old
        // primary of a switchover (configured as the candidate's replica, not
        // applying). Once it replicates, a commit there is an errant
        // transaction, which only the errant checks can deal with.
        if let Some(w) = self.privileged_writer
            && let Some(idx) = self.instances.iter().position(|i| i.ordinal == w)
        {
            let i = &self.instances[idx];
            let (exposed, fenced) = (i.exposed.is_some(), i.fenced);
            // Once another server is being promoted (its catch-up is behind
            // it), what a fault let through here cannot be merged; before
            // that, the candidate can still catch up on it, and must.
            let unmergeable = self.promoting
                || self.instances.iter().any(|j| {
                    j.ordinal != w
                        && (j.role == Role::Primary || (j.source.is_none() && !j.read_only))
                });
            if (i.source.is_none() || fenced)
                && !i.applying
                && !i.frozen(now)
                && self.takes_privileged(i)
                && !self.waiting(w, true)
            {
                let id = self.commit(idx);
                if fenced && !exposed {
                    self.violations.push(format!(
                        "instance {w}, fenced, took a privileged commit {id:?} at t={now}: \
                         its fence was not held"
                    ));
                }
                self.answer(id, true, exposed && unmergeable);
            }
        }
    }

    /// How far behind its source a replica is: the age of the oldest
    /// transaction it has not applied, received or not.
    fn lag_seconds(&self, i: &MInstance) -> u64 {
        let Some(s) = i.source.and_then(|s| self.inst(s)) else {
            return 0;
        };
        let unreceived = s
            .log
            .iter()
            .skip(i.cursor.min(s.log.len()))
            .find(|(id, _)| !i.has(id))
            .map(|(_, t)| *t);
        let oldest = i
            .relay
            .front()
            .map(|(_, t)| *t)
            .into_iter()
            .chain(unreceived)
            .min();
        oldest.map_or(0, |t| self.clock.saturating_sub(t) / 1000)
    }

    /// Whether instance `i` can acknowledge a commit: asynchronously always;
    /// semi-synchronously once enough replicas receive from it.
    fn can_acknowledge(&self, i: &MInstance) -> bool {
        let now = self.clock;
        let Some(k) = self.ack_replicas else {
            return true;
        };
        let receivers = self
            .instances
            .iter()
            .filter(|j| j.source == Some(i.ordinal) && j.serves(now) && j.applying && !j.detached)
            .count();
        u32::try_from(receivers).unwrap_or(u32::MAX) >= k
    }

    fn check(&mut self, during: &str) {
        let now = self.clock;
        // one-writer: instances that take a privileged commit and can
        // acknowledge it, and are not configured as replicas.
        let writers: Vec<u32> = self
            .instances
            .iter()
            .filter(|i| {
                i.source.is_none()
                    && i.exposed.is_none()
                    && !i.frozen(now)
                    && self.takes_privileged(i)
                    && self.can_acknowledge(i)
            })
            .map(|i| i.ordinal)
            .collect();
        if writers.len() > 1 {
            self.violations.push(format!(
                "{during}: instances {writers:?} are all writable (t={now})"
            ));
        }
        self.check_no_writer(during);
        let mut found = Vec::new();
        for i in &self.instances {
            let Some(src) = i.source.and_then(|s| self.inst(s)) else {
                continue;
            };
            // A receiver that is stopped (a failover isolated it, and it
            // was quarantined since) takes nothing from its source: what its
            // relay log holds came while it received, when this check saw it.
            if !(i.up && i.applying && !i.detached && src.up) {
                continue;
            }
            let ok = catalog()
                .check_replication(self.flavor, src.version, i.version)
                .is_ok_and(|v| v.allowed);
            if !ok {
                found.push(format!(
                    "{during}: instance {} ({}) replicates from {} ({}), a newer source",
                    i.ordinal, i.version, src.ordinal, src.version
                ));
            }
            if src.altered && !i.altered {
                found.push(format!(
                    "{during}: instance {} (old table) replicates new-shape rows from {}",
                    i.ordinal, src.ordinal
                ));
            }
        }
        self.violations.extend(found);
        let candidate = match &self.record.intent {
            Some(Intent::Switchover { to, .. }) => Some(*to),
            _ => None,
        };
        let out: Vec<u32> = self
            .out_by_us
            .iter()
            .copied()
            .filter(|o| {
                Some(*o) != candidate
                    && !self.failover_out.contains(o)
                    && !self.record.quarantined.contains_key(o)
                    // Back up, in the pool and not fenced, it serves again
                    // (a restart whose undrain a failover made needless).
                    && self
                        .inst(*o)
                        .is_none_or(|i| i.drained || !i.up || i.fenced)
            })
            .collect();
        if out.len() > 1 {
            self.violations.push(format!(
                "{during}: instances {out:?} are out of service by our action"
            ));
        }
    }

    /// no-writer: the primary takes no writes only inside a switchover (until
    /// its deadline and the undo), while it is down by a fault, or briefly
    /// (it started read-only and waits for the engine); never because we took
    /// it down outside a switchover.
    fn check_no_writer(&mut self, during: &str) {
        let now = self.clock;
        let Some(p) = self.instances.iter().find(|i| i.role == Role::Primary) else {
            return;
        };
        if self.app_writable(p) {
            self.no_writer_since = None;
            return;
        }
        // A failover under way is the way back to a writer: it excuses the
        // gap (its promotion retried after failures included).
        let in_switchover = matches!(&self.record.intent,
            Some(Intent::Switchover { deadline, .. }) if now <= deadline.0 + UNDO_GRACE_MS)
            || matches!(&self.record.intent, Some(Intent::Failover { .. }));
        // A fault that keeps the engine from the primary (it hangs, or the
        // operator cannot reach it) excuses it too, and so does one that keeps
        // it from a switchover's candidate: until the candidate is known
        // read-only, the old primary stays fenced (two writable primaries are
        // worse than none).
        let hidden = |o: u32| {
            self.inst(o)
                .is_some_and(|i| i.frozen(now) || i.cut_until > now)
        };
        let candidate_hidden = matches!(&self.record.intent,
            Some(Intent::Switchover { to, .. }) if hidden(*to));
        let unreachable = hidden(p.ordinal) || candidate_hidden;
        if in_switchover || p.crashed || unreachable {
            self.no_writer_since = None;
            return;
        }
        if !p.up && self.out_by_us.contains(&p.ordinal) {
            self.violations.push(format!(
                "{during}: no writable instance outside a switchover: the primary {} is down \
                 by our action (t={now})",
                p.ordinal
            ));
            return;
        }
        let since = *self.no_writer_since.get_or_insert(now);
        // The model runs the engines' calls one after the other on one
        // clock: while a deposed engine runs on beside the leader, each of
        // the leader's steps takes twice the time it would take alone (two
        // processes call in parallel), so the grace doubles.
        let grace = if self.deposed_call_at.is_some_and(|t| t >= since) {
            2 * NO_WRITER_GRACE_MS
        } else {
            NO_WRITER_GRACE_MS
        };
        if now.saturating_sub(since) > grace {
            self.violations.push(format!(
                "{during}: no writable instance outside a switchover since t={since} (t={now})"
            ));
            self.no_writer_since = Some(now);
        }
    }

    fn gtid(&self, i: &MInstance) -> GtidSet {
        self.gtid_of(i.executed.iter().copied())
    }

    /// The GTID set of these transactions (MariaDB: the last of each domain).
    fn gtid_of(&self, ids: impl Iterator<Item = WriteId>) -> GtidSet {
        let mut by_origin: BTreeMap<u32, Vec<u64>> = BTreeMap::new();
        for (o, seq) in ids.collect::<BTreeSet<_>>() {
            by_origin.entry(o).or_default().push(seq);
        }
        let text = match self.flavor {
            Flavor::Mysql => by_origin
                .iter()
                .map(|(o, seqs)| {
                    let mut ranges = Vec::new();
                    let mut start = seqs[0];
                    let mut prev = seqs[0];
                    for s in seqs.iter().skip(1) {
                        if *s != prev + 1 {
                            ranges.push(range(start, prev));
                            start = *s;
                        }
                        prev = *s;
                    }
                    ranges.push(range(start, prev));
                    format!("{}:{}", uuid(*o), ranges.join(":"))
                })
                .collect::<Vec<_>>()
                .join(","),
            Flavor::Mariadb => by_origin
                .iter()
                .map(|(o, seqs)| {
                    format!("{}-{}-{}", o + 1, o + 1, seqs.last().copied().unwrap_or(0))
                })
                .collect::<Vec<_>>()
                .join(","),
        };
        GtidSet::parse(self.flavor, &text).expect("the model's GTID text parses")
    }

    fn observe(&self) -> Observed {
        let now = self.clock;
        let instances = self
            .instances
            .iter()
            .map(|i| {
                let source_serves = i
                    .source
                    .and_then(|s| self.inst(s))
                    .is_some_and(|s| s.serves(now));
                let health = if i.crashed {
                    Health::Crashed
                } else if !i.up && i.back_at.is_some() {
                    Health::Starting
                } else if !i.up {
                    Health::Stopped
                } else if i.frozen(now) || i.cut_until > now {
                    Health::Unreachable {
                        reason: "connection timed out".into(),
                    }
                } else if i.source.is_some() && i.repl_error_until > now && i.applying {
                    Health::ReplicationStopped {
                        errno: 1062,
                        message: "Duplicate entry".into(),
                    }
                } else if i.source.is_some() && !i.applying {
                    Health::ReplicationStopped {
                        errno: 0,
                        message: "replication is stopped".into(),
                    }
                } else if i.source.is_some() && i.detached {
                    Health::ReplicationStopped {
                        errno: 0,
                        message: "the receiver is stopped".into(),
                    }
                } else if i.source.is_some() && !source_serves {
                    Health::ReplicationStopped {
                        errno: 2003,
                        message: "cannot connect to the source".into(),
                    }
                } else {
                    match self.lag_seconds(i) {
                        0 => Health::Ready,
                        seconds => Health::Lagging { seconds },
                    }
                };
                let answers = i.up && !i.frozen(now) && i.cut_until <= now;
                if !answers {
                    return Instance {
                        ordinal: i.ordinal,
                        role: i.role,
                        version: i.version,
                        revision: i.revision.clone(),
                        health,
                        gtid: None,
                        writable: false,
                        fenced: false,
                        drained: i.drained,
                        source: i.source,
                        schema: None,
                        link: None,
                        ack_replicas: None,
                        galera: None,
                    };
                }
                let link = i.source.map(|_| Link {
                    connected: i.applying && !i.detached && source_serves,
                    received: Some(
                        self.gtid_of(
                            i.executed
                                .iter()
                                .copied()
                                .chain(i.relay.iter().map(|(id, _)| *id)),
                        ),
                    ),
                });
                Instance {
                    ordinal: i.ordinal,
                    role: i.role,
                    version: i.version,
                    revision: i.revision.clone(),
                    health,
                    gtid: i.up.then(|| self.gtid(i)),
                    writable: self.app_writable(i),
                    fenced: i.lock,
                    drained: i.drained,
                    source: i.source,
                    schema: self
                        .schema
                        .as_ref()
                        .filter(|_| i.altered)
                        .map(|(id, _)| id.clone()),
                    link,
                    ack_replicas: if i.source.is_none() {
                        self.ack_replicas
                    } else {
                        None
                    },
                    galera: None,
                }
            })
            .collect();
        Observed {
            kind: TopologyKind::Async,
            flavor: self.flavor,
            instances,
        }
    }

    /// Makes `ordinal` a writable primary with no source (as a promotion's
    /// SQL does), without moving the bookkeeping.
    fn make_writable(&mut self, ordinal: u32) {
        self.discard_relay(ordinal);
        if let Some(i) = self.inst_mut(ordinal) {
            i.source = None;
            i.applying = false;
            i.detached = false;
            i.read_only = false;
            i.lock = false;
        }
    }

    /// Checks a failover's promotion of `ordinal` before it takes effect: a
    /// failover recorded lossless must promote a candidate holding every
    /// acknowledged write; one that is not must be allowed to lose them, and
    /// what it loses must stay on the failed primary. The failed primary,
    /// which could not be fenced, may take writes when it comes back until
    /// the engine deals with it (`exposed`).
    fn check_failover_promotion(&mut self, ordinal: u32) {
        let Some(Intent::Failover { from, lossless, .. }) = self.record.intent.clone() else {
            return;
        };
        let steps = self.steps;
        let Some(c) = self.inst(ordinal) else { return };
        let lacking: BTreeSet<WriteId> = self
            .acknowledged
            .iter()
            .filter(|id| !c.executed.contains(id))
            .copied()
            .collect();
        // Lost to a second fault: a crash emptied the relay log of a replica
        // that had acknowledged them.
        let (double_fault, lacking): (BTreeSet<WriteId>, BTreeSet<WriteId>) = lacking
            .into_iter()
            .partition(|id| self.relay_discarded.contains(id));
        self.accepted_loss.extend(double_fault);
        if lossless && !lacking.is_empty() {
            self.violations.push(format!(
                "promote {ordinal}: a failover recorded lossless promoted a candidate lacking {} \
                 acknowledged writes (first {:?})",
                lacking.len(),
                lacking.iter().next()
            ));
        }
        if !lossless && !self.accept_data_loss {
            self.violations.push(format!(
                "promote {ordinal}: a failover that may lose acknowledged writes ran though the \
                 policy does not accept it"
            ));
        }
        if !lossless {
            self.accepted_loss.extend(lacking);
            let in_flight: Vec<WriteId> = self
                .pending
                .keys()
                .filter(|id| id.0 == from)
                .copied()
                .collect();
            self.at_risk.extend(in_flight);
        }
        let now = self.clock;
        if let Some(old) = self.inst_mut(from)
            && (!old.up || old.frozen(now))
        {
            old.exposed = Some(steps);
        }
    }

    /// Notes the errant transactions engine `engine` saw in `observed`: on a
    /// replica while the writable primary answered without them.
    fn note_errant_seen(&mut self, engine: u32, observed: &Observed) {
        let Some(p) = observed
            .instances
            .iter()
            .find(|i| i.role == Role::Primary && i.writable && i.gtid.is_some())
        else {
            return;
        };
        let Some(primary) = self.inst(p.ordinal) else {
            return;
        };
        let shown: BTreeSet<u32> = observed
            .instances
            .iter()
            .filter(|i| i.gtid.is_some())
            .map(|i| i.ordinal)
            .collect();
        let seen: Vec<WriteId> = self
            .errant
            .keys()
            .filter(|id| !primary.executed.contains(id))
            .filter(|id| {
                self.instances
                    .iter()
                    .any(|i| shown.contains(&i.ordinal) && i.executed.contains(id))
            })
            .copied()
            .collect();
        self.errant_seen.entry(engine).or_default().extend(seen);
    }

    /// Checks a promotion of `ordinal`: it must hold no errant transaction
    /// the engine could have seen (one written during this very call could
    /// not be).
    fn check_promotion(&mut self, ordinal: u32) {
        let Some(i) = self.inst(ordinal) else { return };
        let now = self.ops;
        // A failover cannot compare with the failed primary: it answers for
        // what an engine saw beside the primary and recorded.
        let failover = matches!(self.record.intent, Some(Intent::Failover { .. }));
        let held: Vec<WriteId> = self
            .errant
            .iter()
            .filter(|(id, at)| {
                (if failover {
                    self.errant_known.contains(id)
                } else {
                    **at < now
                }) && i.executed.contains(id)
            })
            .map(|(id, _)| *id)
            .collect();
        // What a failover promoted without being able to tell is the new
        // primary's history from now on, replicated to every replica.
        let absorbed: Vec<WriteId> = if failover {
            self.errant
                .keys()
                .filter(|id| i.executed.contains(id))
                .copied()
                .collect()
        } else {
            Vec::new()
        };
        for id in absorbed {
            self.errant.remove(&id);
        }
        if !held.is_empty() {
            self.violations.push(format!(
                "promote {ordinal}: the candidate holds errant transactions {held:?}"
            ));
        }
    }
}

fn range(a: u64, b: u64) -> String {
    if a == b {
        a.to_string()
    } else {
        format!("{a}-{b}")
    }
}

/// One engine's handle on the model: its own identity and connections.
pub struct Handle {
    model: Arc<Model>,
    id: u32,
}

impl Handle {
    async fn op<T>(
        &self,
        what: &str,
        inside: impl FnOnce(&mut State),
        f: impl FnOnce(&mut State) -> Result<T, String>,
    ) -> Result<T, RuntimeError> {
        // Other engines run between two calls of this one.
        tokio::task::yield_now().await;
        self.model.op(self.id, what, inside, f)
    }
}

/// A call bounded by `deadline` sends nothing once it has passed (as the
/// SQL layer does).
fn in_time(s: &State, deadline: Timestamp) -> Result<(), String> {
    if s.clock > deadline.0 {
        return Err(format!(
            "the deadline {} passed at {}: nothing was sent",
            deadline, s.clock
        ));
    }
    Ok(())
}

fn up(s: &mut State, ordinal: u32) -> Result<&mut MInstance, String> {
    let now = s.clock;
    let i = s.inst_mut(ordinal).ok_or("no such instance")?;
    if !i.up {
        return Err(format!("instance {ordinal} is down"));
    }
    if i.frozen(now) || i.cut_until > now {
        return Err(format!("instance {ordinal} does not answer"));
    }
    Ok(i)
}

#[async_trait]
impl ClusterRuntime for Handle {
    fn now(&self) -> Timestamp {
        Timestamp(self.model.lock().clock)
    }

    async fn observe(&self) -> Result<Observed, RuntimeError> {
        let id = self.id;
        self.op(
            "observe",
            |_| {},
            |s| {
                let op = s.ops;
                s.observed_at.insert(id, op);
                let observed = s.observe();
                s.note_errant_seen(id, &observed);
                Ok(observed)
            },
        )
        .await
    }

    async fn load_record(&self) -> Result<Record, RuntimeError> {
        self.op("load record", |_| {}, |s| Ok(s.record.clone()))
            .await
    }

    async fn store_record(&self, expected_seq: u64, record: &Record) -> Result<(), RuntimeError> {
        tokio::task::yield_now().await;
        let mut s = self.model.lock();
        if s.dead.contains(&self.id) {
            return Err(killed("store record"));
        }
        if s.record.seq != expected_seq {
            return Err(RuntimeError::conflict("store record"));
        }
        // A failover begins: a failed primary (down or hung, not merely cut
        // off from the operator) may come back and take commits before the
        // engine can fence it; they must be reported, never lost silently.
        let began = !matches!(s.record.intent, Some(Intent::Failover { .. }));
        if began && let Some(Intent::Failover { from, .. }) = &record.intent {
            let (now, steps) = (s.clock, s.steps);
            if let Some(old) = s.inst_mut(*from)
                && (!old.up || old.frozen(now))
            {
                old.exposed = Some(steps);
            }
        }
        s.record = record.clone();
        let seen = s.errant_seen.get(&self.id).cloned().unwrap_or_default();
        s.errant_known.extend(seen);
        if std::mem::take(&mut s.record_write_fails) {
            return Err(RuntimeError::new(
                RuntimeErrorKind::Transient,
                "store record",
                "the write took effect but its answer was lost",
            ));
        }
        Ok(())
    }

    async fn confirm_leadership(&self, until: Timestamp) -> Result<(), RuntimeError> {
        let mut s = self.model.lock();
        let now = s.clock;
        let Some(g) = s.grants.get_mut(&self.id) else {
            return Err(RuntimeError::new(
                RuntimeErrorKind::Conflict,
                "confirm the lease",
                "this engine holds no lease",
            ));
        };
        if now < g.from || now > g.until || until.0 > g.until {
            return Err(RuntimeError::new(
                RuntimeErrorKind::Conflict,
                "confirm the lease",
                format!(
                    "the lease covers {}..{}, not {now}..{}",
                    g.from, g.until, until.0
                ),
            ));
        }
        g.confirmed = g.confirmed.max(until.0);
        Ok(())
    }

    async fn drain(&self, ordinal: u32) -> Result<(), RuntimeError> {
        self.op(
            &format!("drain {ordinal}"),
            |_| {},
            |s| {
                // A failed primary a failover replaced (drained during the
                // failover, or after it to be quarantined) serves nothing: the
                // fault took it out, not us (as the simulation's monitor counts).
                if matches!(s.record.intent, Some(Intent::Failover { .. }))
                    || s.record.failed_over.contains(&ordinal)
                {
                    s.failover_out.insert(ordinal);
                }
                s.out_by_us.insert(ordinal);
                s.inst_mut(ordinal).ok_or("no such instance")?.drained = true;
                Ok(())
            },
        )
        .await
    }

    async fn undrain(&self, ordinal: u32) -> Result<(), RuntimeError> {
        self.op(
            &format!("undrain {ordinal}"),
            |_| {},
            |s| {
                up(s, ordinal)?.drained = false;
                s.out_by_us.remove(&ordinal);
                s.failover_out.remove(&ordinal);
                Ok(())
            },
        )
        .await
    }

    async fn restart(
        &self,
        ordinal: u32,
        revision: &Revision,
        version: Version,
        slow_shutdown: bool,
    ) -> Result<(), RuntimeError> {
        let go_down = |s: &mut State| -> Result<(), String> {
            // One a failover took out (held back, or drained when it took
            // over) is not taken out again by its restart.
            s.out_by_us.insert(ordinal);
            let flavor = s.flavor;
            let seen = s.observed_at.get(&s.caller).copied().unwrap_or(0);
            let i = s.inst_mut(ordinal).ok_or("no such instance")?;
            let from = i.version;
            let crashed = i.crashed;
            let crashed_just_now = crashed && i.crashed_at_op >= seen;
            if from != version && crashed {
                // The runtime refuses to start a crashed instance on another
                // version; an engine that saw the crash and asked is wrong.
                if !crashed_just_now {
                    s.violations.push(format!(
                        "restart {ordinal}: version change of a crashed instance (not recovered first)"
                    ));
                }
                return Err(format!(
                    "instance {ordinal} crashed: recover it on {from} first"
                ));
            }
            if from != version {
                let mut v = Vec::new();
                if !slow_shutdown {
                    v.push(format!(
                        "restart {ordinal}: version change without a slow shutdown"
                    ));
                }
                let allowed = catalog()
                    .check_in_place(flavor, from, version)
                    .is_ok_and(|v| v.allowed);
                if !allowed {
                    v.push(format!(
                        "restart {ordinal}: forbidden transition {from} -> {version} started"
                    ));
                }
                s.violations.extend(v);
            }
            s.pending.retain(|id, _| id.0 != ordinal);
            let now = s.clock;
            // A hung or cut-off instance could not drain its relay log first:
            // that loss is the fault's.
            let answered = s.inst(ordinal).is_some_and(|i| {
                i.up && !i.frozen(now) && i.cut_until <= now && i.repl_error_until <= now
            });
            let discarded = s.discard_relay(ordinal);
            if s.ack_replicas.is_some() && answered && !discarded.is_empty() {
                s.violations.push(format!(
                    "restart {ordinal}: stopped with {} acknowledged transactions received and \
                     not applied, which its relay log loses (first {:?})",
                    discarded.len(),
                    discarded.first()
                ));
            }
            let i = s.inst_mut(ordinal).ok_or("no such instance")?;
            i.up = false;
            i.lock = false;
            i.version = version;
            i.revision = revision.clone();
            s.check(&format!("restart {ordinal} (down)"));
            Ok(())
        };
        self.op(
            &format!("restart {ordinal}"),
            |s| {
                let back = s.clock + SUPERVISOR_START_MS;
                if go_down(s).is_ok()
                    && let Some(i) = s.inst_mut(ordinal)
                {
                    i.back_at = Some(back);
                }
            },
            |s| {
                go_down(s)?;
                let s_caller = s.caller;
                let i = s.inst_mut(ordinal).ok_or("no such instance")?;
                if std::mem::take(&mut i.restart_fails) {
                    i.crashed = true;
                    return Err(format!("instance {ordinal} failed to start on {version}"));
                }
                i.crashed = false;
                i.back_at = None;
                i.up = true;
                // Every instance starts read-only, its replication not
                // started; one the runtime records as fenced, fenced again.
                i.read_only = true;
                i.applying = false;
                i.lock = i.fenced;
                i.lock_by = s_caller;
                Ok(())
            },
        )
        .await
    }

    async fn recover(&self, ordinal: u32) -> Result<(), RuntimeError> {
        self.op(
            &format!("recover {ordinal}"),
            |_| {},
            |s| {
                let now = s.clock;
                let s_caller = s.caller;
                let s_steps = s.steps;
                let i = s.inst_mut(ordinal).ok_or("no such instance")?;
                if !i.crashed {
                    return Ok(());
                }
                if now < i.recover_after {
                    return Err(format!("instance {ordinal} did not come back"));
                }
                i.crashed = false;
                i.up = true;
                i.read_only = true;
                i.applying = false;
                i.lock = i.fenced;
                i.lock_by = s_caller;
                // Back without a source it may be taken for a primary by a
                // privileged client until the engine's next step repoints it.
                if i.role != Role::Primary && i.source.is_none() {
                    i.exposed = Some(s_steps);
                }
                Ok(())
            },
        )
        .await
    }

    async fn fence(&self, ordinal: u32, deadline: Timestamp) -> Result<(), RuntimeError> {
        self.op(
            &format!("fence {ordinal}"),
            |_| {},
            |s| {
                in_time(s, deadline)?;
                let caller = s.caller;
                let i = up(s, ordinal)?;
                i.read_only = true;
                i.lock = true;
                i.lock_by = caller;
                i.fenced = true;
                if i.role == Role::Primary {
                    s.out_by_us.insert(ordinal);
                    // A failed primary fenced by a failover was out of
                    // service by the fault, not by us.
                    if matches!(s.record.intent, Some(Intent::Failover { .. }))
                        || s.record.failed_over.contains(&ordinal)
                    {
                        s.failover_out.insert(ordinal);
                    }
                }
                Ok(())
            },
        )
        .await
    }

    async fn unfence(&self, ordinal: u32, deadline: Timestamp) -> Result<(), RuntimeError> {
        self.op(
            &format!("unfence {ordinal}"),
            |_| {},
            |s| {
                in_time(s, deadline)?;
                up(s, ordinal)?;
                for i in &mut s.instances {
                    if i.ordinal != ordinal && i.role == Role::Primary {
                        i.role = Role::Replica;
                    }
                }
                s.make_writable(ordinal);
                let i = s.inst_mut(ordinal).ok_or("no such instance")?;
                i.role = Role::Primary;
                i.fenced = false;
                s.out_by_us.remove(&ordinal);
                Ok(())
            },
        )
        .await
    }

    async fn demote(
        &self,
        ordinal: u32,
        source: u32,
        deadline: Timestamp,
    ) -> Result<(), RuntimeError> {
        self.op(
            &format!("demote {ordinal} under {source}"),
            |_| {},
            |s| {
                in_time(s, deadline)?;
                let caller = s.caller;
                up(s, ordinal)?;
                s.discard_relay(ordinal);
                let i = up(s, ordinal)?;
                i.detached = false;
                i.source = Some(source);
                i.applying = false;
                i.read_only = true;
                // The lock is released for the reconfiguration and taken again.
                i.lock = true;
                i.lock_by = caller;
                Ok(())
            },
        )
        .await
    }

    async fn wait_caught_up(
        &self,
        candidate: u32,
        from: u32,
        deadline: Timestamp,
    ) -> Result<(), RuntimeError> {
        self.op(
            &format!("wait for {candidate} to catch up with {from}"),
            |_| {},
            |s| {
                let want = s
                    .inst(from)
                    .filter(|i| i.up)
                    .map(|i| i.executed.clone())
                    .ok_or_else(|| format!("instance {from} is down"))?;
                loop {
                    let have = s
                        .inst(candidate)
                        .map(|i| i.executed.is_superset(&want))
                        .unwrap_or(false);
                    if have {
                        return Ok(());
                    }
                    if s.clock >= deadline.0 {
                        return Err(format!("{candidate} did not catch up by the deadline"));
                    }
                    s.advance(100);
                    s.check("catching up");
                }
            },
        )
        .await
    }

    async fn promote(&self, ordinal: u32, deadline: Timestamp) -> Result<(), RuntimeError> {
        self.op(
            &format!("promote {ordinal}"),
            |s| {
                if s.clock <= deadline.0 && up(s, ordinal).is_ok() {
                    s.check_promotion(ordinal);
                    s.check_failover_promotion(ordinal);
                    s.make_writable(ordinal);
                }
            },
            |s| {
                in_time(s, deadline)?;
                up(s, ordinal)?;
                s.check_promotion(ordinal);
                s.check_failover_promotion(ordinal);
                s.make_writable(ordinal);
                if s.promote_fails > 0 {
                    s.promote_fails -= 1;
                    return Err("the candidate took writes, then the promotion failed".into());
                }
                for i in &mut s.instances {
                    if i.role == Role::Primary && i.ordinal != ordinal {
                        i.role = Role::Replica;
                    }
                }
                let i = s.inst_mut(ordinal).ok_or("no such instance")?;
                i.role = Role::Primary;
                i.fenced = false;
                // Serving writes: whatever took it out of service is over.
                s.out_by_us.remove(&ordinal);
                s.failover_out.remove(&ordinal);
                Ok(())
            },
        )
        .await
    }

    async fn repoint(&self, ordinal: u32, source: u32) -> Result<(), RuntimeError> {
        self.op(
            &format!("repoint {ordinal} to {source}"),
            |_| {},
            |s| {
                let i = up(s, ordinal)?;
                if i.role == Role::Primary {
                    return Err(format!("instance {ordinal} is the primary"));
                }
                s.discard_relay(ordinal);
                let i = up(s, ordinal)?;
                i.detached = false;
                i.source = Some(source);
                i.applying = true;
                i.read_only = true;
                i.lock = false;
                i.fenced = false;
                Ok(())
            },
        )
        .await
    }

    async fn detach(&self, ordinal: u32, deadline: Timestamp) -> Result<(), RuntimeError> {
        self.op(
            &format!("detach {ordinal}"),
            |_| {},
            |s| {
                in_time(s, deadline)?;
                up(s, ordinal)?.detached = true;
                Ok(())
            },
        )
        .await
    }

    async fn wait_received_applied(
        &self,
        ordinal: u32,
        deadline: Timestamp,
    ) -> Result<(), RuntimeError> {
        self.op(
            &format!("wait for {ordinal} to apply what it received"),
            |_| {},
            |s| loop {
                let i = up(s, ordinal)?;
                if i.relay.is_empty() {
                    return Ok(());
                }
                if s.clock >= deadline.0 {
                    return Err(format!(
                        "{ordinal} did not apply what it received by the deadline"
                    ));
                }
                s.advance(100);
                s.check("applying the relay log");
            },
        )
        .await
    }

    async fn run_ddl(&self, ordinal: u32, change: &SchemaTarget) -> Result<(), RuntimeError> {
        self.op(
            &format!("alter {ordinal}"),
            |_| {},
            |s| {
                let flavor = s.flavor;
                let s_caller = s.caller;
                let i = up(s, ordinal)?;
                let takes_writes = !i.lock && (flavor == Flavor::Mariadb || !i.read_only);
                if i.role == Role::Primary && takes_writes && !change.primary_online {
                    s.violations.push(format!("alter {ordinal}: the primary was altered in place by a change that needs a switchover"));
                }
                let i = s.inst_mut(ordinal).ok_or("no such instance")?;
                // A fenced instance keeps every other client out for the whole
                // statement (the runtime holds the fence across the ALTER).
                if i.fenced {
                    i.lock = true;
                    i.lock_by = s_caller;
                }
                i.altered = true;
                Ok(())
            },
        )
        .await
    }

    async fn pause(&self, _reason: &WaitReason) {
        self.model.tick(Duration::from_millis(1000));
    }
}
