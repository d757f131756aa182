//! The heartbeat of a node that runs the delivery worker: every `node_heartbeat_interval` it
//! moves its row in `nodes` forward, then declares dead the nodes silent for
//! `node_dead_after` (their leases released in the same transaction, see
//! `Store::reap_dead_nodes`) and wakes the worker to claim what they held.
//!
//! A node that finds its own row gone was declared dead by another one (it was paused, or
//! cut off from the database, for longer than `node_dead_after`): it says so and registers
//! again. It keeps working: the attempts it finishes under the leases taken from it are
//! refused by the lease token, so they never record over the new owner's.

use std::time::Duration;

use tokio::sync::watch;

use crate::clock::{Clock, micros};
use crate::store::Store;

/// One node's heartbeat.
#[derive(Clone)]
pub struct Heartbeat {
    pub store: Store,
    pub node: String,
    pub clock: Clock,
    pub interval: Duration,
    pub dead_after: Duration,
}

/// What one beat found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Beat {
    /// This node had no row: another node had declared it dead.
    pub was_declared_dead: bool,
    /// The nodes this beat declared dead, each with the leases it released.
    pub declared_dead: Vec<(String, u64)>,
}

impl Heartbeat {
    /// Beats until `stop` turns true.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let mut ticker = tokio::time::interval(self.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut registered = false;
        let mut failing = false;
        let mut last = tokio::time::Instant::now();
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = stop.changed() => {}
            }
            if *stop.borrow() {
                return;
            }
            // A gap longer than `dead_after` between two ticks: the process was stopped
            // (SIGSTOP, a stall) long enough for the other nodes to declare it dead.
            let gap = last.elapsed();
            last = tokio::time::Instant::now();
            if gap > self.dead_after {
                tracing::warn!(node = %self.node, stalled = ?gap, dead_after = ?self.dead_after,
                    "this node was stalled for longer than node_dead_after; other nodes may \
                     have declared it dead and taken its deliveries (its attempts under \
                     those leases will be refused)");
            }
            match self.beat(registered).await {
                Ok(_) => {
                    registered = true;
                    if failing {
                        tracing::info!(node = %self.node, "node heartbeat works again");
                        failing = false;
                    }
                }
                Err(e) => {
                    if !failing {
                        tracing::warn!(node = %self.node, error = %e,
                            "node heartbeat failed; other nodes will declare this one dead \
                             if it stays silent for node_dead_after");
                        failing = true;
                    }
                }
            }
        }
    }

    /// One beat: moves this node's row forward (registering it when `registered` is false,
    /// or when it is gone), then declares dead the nodes silent for `dead_after`, and
    /// wakes the worker when their leases were released.
    pub async fn beat(&self, registered: bool) -> crate::store::Result<Beat> {
        let now = self.clock.now_micros();
        let mut beat = Beat::default();
        if !registered {
            self.store.register_node(&self.node, now).await?;
        } else if !self.store.beat(&self.node, now).await? {
            beat.was_declared_dead = true;
            tracing::warn!(node = %self.node,
                "this node was declared dead by another node (no heartbeat for \
                 node_dead_after): its leases were released and its deliveries may be sent \
                 again elsewhere; attempts it finishes under those leases are refused. \
                 Registering again and carrying on");
            self.store.register_node(&self.node, now).await?;
        }
        let dead_before = now.saturating_sub(micros(self.dead_after));
        let dead = self.store.reap_dead_nodes(&self.node, dead_before).await?;
        let mut released = 0;
        for d in dead {
            tracing::warn!(node = %self.node, dead_node = %d.name,
                silent_for_ms = now.saturating_sub(d.last_beat_at) / 1000,
                released = d.released,
                "declared a silent node dead; its deliveries in flight go out again");
            released += d.released;
            beat.declared_dead.push((d.name, d.released));
        }
        if released > 0 {
            self.store.wake_worker();
        }
        Ok(beat)
    }
}
