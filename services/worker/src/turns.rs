//! Export slots shared between organizations in turn. The worker holds more
//! export jobs than it runs (`EXPORT_LOOKAHEAD`); whenever a slot frees, it
//! goes to the organization with the fewest exports running here, and among
//! those to the one served longest ago, so a backlog of one organization
//! never keeps another's export waiting behind all of it. Within an
//! organization, jobs run in the order they arrived.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use tokio::sync::oneshot;
use uuid::Uuid;

#[derive(Clone)]
pub(crate) struct Turns {
    state: Arc<Mutex<State>>,
}

/// The right to run one export; the slot passes on when it is dropped.
pub(crate) struct Slot {
    org: Uuid,
    /// `None` once the slot has been handed back by other means.
    state: Option<Arc<Mutex<State>>>,
}

struct State {
    free: usize,
    running: HashMap<Uuid, usize>,
    /// When each organization with work here last got a slot (a counter).
    served: HashMap<Uuid, u64>,
    /// In arrival order.
    waiting: Vec<Waiter>,
    clock: u64,
}

struct Waiter {
    org: Uuid,
    arrived: u64,
    grant: oneshot::Sender<Slot>,
}

impl Turns {
    pub(crate) fn new(slots: usize) -> Self {
        let state =
            State { free: slots, running: HashMap::new(), served: HashMap::new(), waiting: Vec::new(), clock: 0 };
        Self { state: Arc::new(Mutex::new(state)) }
    }

    /// Waits for this organization's turn. `None` only if the slots are gone,
    /// which cannot happen while `self` lives.
    pub(crate) async fn take(&self, org: Uuid) -> Option<Slot> {
        let granted = {
            let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            if state.free > 0 {
                state.start(org);
                return Some(Slot { org, state: Some(Arc::clone(&self.state)) });
            }
            let (grant, granted) = oneshot::channel();
            let arrived = state.tick();
            state.waiting.push(Waiter { org, arrived, grant });
            granted
        };
        granted.await.ok()
    }
}

impl State {
    fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    fn start(&mut self, org: Uuid) {
        self.free -= 1;
        *self.running.entry(org).or_default() += 1;
        let now = self.tick();
        self.served.insert(org, now);
    }

    fn finish(&mut self, org: Uuid) {
        self.free += 1;
        let running = self.running.entry(org).or_default();
        *running = running.saturating_sub(1);
        if *running == 0 {
            self.running.remove(&org);
            // Forgotten once it has nothing here, so the maps stay as small
            // as the work in hand.
            if !self.waiting.iter().any(|waiter| waiter.org == org) {
                self.served.remove(&org);
            }
        }
    }

    /// Fewest running, then served longest ago (never counts as longest),
    /// then arrived first.
    fn next(&self) -> Option<usize> {
        let rank = |waiter: &Waiter| {
            let running = self.running.get(&waiter.org).copied().unwrap_or(0);
            let served = self.served.get(&waiter.org).copied().unwrap_or(0);
            (running, served, waiter.arrived)
        };
        (0..self.waiting.len()).min_by_key(|&index| rank(&self.waiting[index]))
    }

    fn hand_out(&mut self, shared: &Arc<Mutex<State>>) {
        while self.free > 0 {
            let Some(index) = self.next() else { return };
            let waiter = self.waiting.remove(index);
            self.start(waiter.org);
            let slot = Slot { org: waiter.org, state: Some(Arc::clone(shared)) };
            if let Err(mut unwanted) = waiter.grant.send(slot) {
                // Its job was cancelled while it waited: the slot comes back
                // here directly, since dropping it would lock the state again.
                unwanted.state = None;
                self.finish(waiter.org);
            }
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let Some(shared) = self.state.take() else { return };
        let mut state = shared.lock().unwrap_or_else(PoisonError::into_inner);
        state.finish(self.org);
        state.hand_out(&shared);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::mpsc;

    const A: Uuid = Uuid::from_u128(0xa);
    const B: Uuid = Uuid::from_u128(0xb);
    const C: Uuid = Uuid::from_u128(0xc);

    /// Queues one job per `(label, org)`, in that order, each of which
    /// reports its label when its turn comes and then finishes at once.
    async fn queue(turns: &Turns, jobs: &[(&'static str, Uuid)]) -> mpsc::UnboundedReceiver<&'static str> {
        let (ran, order) = mpsc::unbounded_channel();
        for &(label, org) in jobs {
            let (turns, ran) = (turns.clone(), ran.clone());
            tokio::spawn(async move {
                let slot = turns.take(org).await;
                ran.send(label).unwrap();
                drop(slot);
            });
            // Lets the job register before the next one (one thread).
            tokio::task::yield_now().await;
        }
        order
    }

    async fn drain(mut order: mpsc::UnboundedReceiver<&'static str>, count: usize) -> Vec<&'static str> {
        let mut labels = Vec::new();
        while labels.len() < count {
            labels.push(order.recv().await.unwrap());
        }
        labels
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_newcomer_goes_before_the_rest_of_a_backlog() {
        let turns = Turns::new(1);
        let first = turns.take(A).await.unwrap();
        let order = queue(&turns, &[("a2", A), ("a3", A), ("a4", A), ("b1", B)]).await;
        drop(first);
        assert_eq!(drain(order, 4).await, ["b1", "a2", "a3", "a4"]);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn the_organization_with_the_fewest_running_goes_first() {
        let turns = Turns::new(3);
        let (a1, _a2, _b1) = (turns.take(A).await.unwrap(), turns.take(A).await.unwrap(), turns.take(B).await.unwrap());
        let order = queue(&turns, &[("a3", A), ("b2", B), ("c1", C)]).await;
        drop(a1);
        assert_eq!(drain(order, 1).await, ["c1"]);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn one_organization_alone_uses_every_slot_in_arrival_order() {
        let turns = Turns::new(2);
        let (a1, a2) = (turns.take(A).await.unwrap(), turns.take(A).await.unwrap());
        let order = queue(&turns, &[("a3", A), ("a4", A), ("a5", A)]).await;
        drop((a1, a2));
        assert_eq!(drain(order, 3).await, ["a3", "a4", "a5"]);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_job_cancelled_while_waiting_gives_its_turn_back() {
        let turns = Turns::new(1);
        let first = turns.take(A).await.unwrap();
        let cancelled = tokio::spawn({
            let turns = turns.clone();
            async move { turns.take(B).await.map(drop) }
        });
        tokio::task::yield_now().await;
        cancelled.abort();
        assert!(cancelled.await.unwrap_err().is_cancelled());
        drop(first);
        let state = turns.state.lock().unwrap();
        assert_eq!((state.free, state.waiting.len(), state.running.len(), state.served.len()), (1, 0, 0, 0));
    }
}
