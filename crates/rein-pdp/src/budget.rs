//! Budget counters: each agent's decisions per minute, and per task its mutating actions and
//! the distinct systems it touched.
//!
//! Counters live in this process's memory: with several replicas each enforces its own share.
//! One agent's counters are locked for the whole of one decision (read usage, decide, count),
//! so concurrent calls of one agent cannot both pass the last unit of a budget; different
//! agents never wait for each other.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};

use chrono::{DateTime, Utc};
use rein_core::id::{AgentId, SystemName};
use rein_policy::BudgetUsage;

/// Tasks tracked per agent; beyond it the least recently used task's counters are dropped.
pub const MAX_TASKS_PER_AGENT: usize = 4096;

/// Seconds a task's counters are kept after its last call.
pub const TASK_IDLE_SECONDS: i64 = 24 * 3600;

/// All agents' counters.
#[derive(Debug, Default)]
pub struct Budgets {
    agents: RwLock<HashMap<AgentId, Arc<Mutex<AgentUsage>>>>,
}

/// One agent's counters, locked for the duration of one decision.
#[derive(Debug)]
pub struct AgentUsage {
    /// Decisions per second over the last minute: (unix second, count), indexed by second mod 60.
    seconds: [(i64, u32); 60],
    tasks: HashMap<String, TaskUsage>,
}

impl Default for AgentUsage {
    fn default() -> Self {
        Self {
            seconds: [(0, 0); 60],
            tasks: HashMap::new(),
        }
    }
}

#[derive(Debug, Default)]
struct TaskUsage {
    mutations: u32,
    systems: HashSet<SystemName>,
    last_seen: i64,
}

impl Budgets {
    /// The counters of `agent`, created on first use. Call only for agents that exist, so that
    /// requests naming unknown agents cannot grow the table.
    pub fn of(&self, agent: &AgentId) -> Arc<Mutex<AgentUsage>> {
        if let Some(slot) = self
            .agents
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(agent)
        {
            return Arc::clone(slot);
        }
        let mut agents = self.agents.write().unwrap_or_else(PoisonError::into_inner);
        Arc::clone(agents.entry(agent.clone()).or_default())
    }
}

/// Locks one agent's counters. A poisoned lock (a panic mid-update) is recovered: counters are
/// plain numbers, and at worst over-count, which denies more, not less.
pub fn lock(slot: &Mutex<AgentUsage>) -> MutexGuard<'_, AgentUsage> {
    slot.lock().unwrap_or_else(PoisonError::into_inner)
}

impl AgentUsage {
    /// Usage before a call at `now` to `system` in `task` (see [`BudgetUsage`]).
    pub fn usage(
        &self,
        now: DateTime<Utc>,
        task: Option<&str>,
        system: &SystemName,
    ) -> BudgetUsage {
        let second = now.timestamp();
        let calls_last_minute = self
            .seconds
            .iter()
            .filter(|(s, _)| second - 60 < *s && *s <= second)
            .map(|(_, n)| *n)
            .sum();
        let task = task.and_then(|t| self.tasks.get(t));
        let (task_mutations, task_systems) = task.map_or((0, 1), |t| {
            let others = u32::try_from(t.systems.len()).unwrap_or(u32::MAX);
            let this = u32::from(!t.systems.contains(system));
            (t.mutations, others.saturating_add(this))
        });
        BudgetUsage {
            calls_last_minute,
            task_mutations,
            task_systems,
        }
    }

    /// Counts a decided call: every call counts against calls per minute; an allowed one
    /// counts against its task (as a mutation when `mutating`, and its system as touched).
    pub fn record(
        &mut self,
        now: DateTime<Utc>,
        task: Option<&str>,
        system: &SystemName,
        allowed: bool,
        mutating: bool,
    ) {
        let second = now.timestamp();
        let slot = &mut self.seconds[usize::try_from(second.rem_euclid(60)).unwrap_or(0)];
        if slot.0 == second {
            slot.1 = slot.1.saturating_add(1);
        } else {
            *slot = (second, 1);
        }
        let Some(task) = task.filter(|_| allowed) else {
            return;
        };
        if !self.tasks.contains_key(task) {
            self.make_room(second);
        }
        let usage = self.tasks.entry(task.to_owned()).or_default();
        usage.last_seen = second;
        if mutating {
            usage.mutations = usage.mutations.saturating_add(1);
        }
        if !usage.systems.contains(system) {
            usage.systems.insert(system.clone());
        }
    }

    /// Drops idle tasks, and the least recently used one if the table is still full.
    fn make_room(&mut self, now: i64) {
        if self.tasks.len() < MAX_TASKS_PER_AGENT {
            return;
        }
        self.tasks
            .retain(|_, t| now - t.last_seen <= TASK_IDLE_SECONDS);
        if self.tasks.len() >= MAX_TASKS_PER_AGENT {
            if let Some(oldest) = self
                .tasks
                .iter()
                .min_by_key(|(_, t)| t.last_seen)
                .map(|(k, _)| k.clone())
            {
                self.tasks.remove(&oldest);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use chrono::TimeZone as _;

    use super::*;

    fn at(second: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_800_000_000 + second, 0).unwrap()
    }

    #[test]
    fn calls_per_minute_slide_by_the_second() {
        let sys: SystemName = "db".parse().unwrap();
        let mut u = AgentUsage::default();
        for s in 0..3 {
            u.record(at(s), None, &sys, false, false);
        }
        assert_eq!(u.usage(at(2), None, &sys).calls_last_minute, 3);
        assert_eq!(u.usage(at(59), None, &sys).calls_last_minute, 3);
        assert_eq!(u.usage(at(60), None, &sys).calls_last_minute, 2);
        assert_eq!(u.usage(at(62), None, &sys).calls_last_minute, 0);
    }

    #[test]
    fn only_allowed_calls_count_against_their_task() {
        let a: SystemName = "a".parse().unwrap();
        let b: SystemName = "b".parse().unwrap();
        let mut u = AgentUsage::default();
        u.record(at(0), Some("t"), &a, true, true);
        u.record(at(0), Some("t"), &b, false, true);
        let usage = u.usage(at(1), Some("t"), &b);
        assert_eq!(usage.task_mutations, 1);
        assert_eq!(
            usage.task_systems, 2,
            "b is new, so this call would make two"
        );
        assert_eq!(u.usage(at(1), Some("t"), &a).task_systems, 1);
        assert_eq!(u.usage(at(1), Some("other"), &a).task_mutations, 0);
    }

    #[test]
    fn the_task_table_is_bounded() {
        let a: SystemName = "a".parse().unwrap();
        let mut u = AgentUsage::default();
        for i in 0..=MAX_TASKS_PER_AGENT {
            u.record(at(i as i64), Some(&format!("t{i}")), &a, true, true);
        }
        assert_eq!(u.tasks.len(), MAX_TASKS_PER_AGENT);
        assert!(
            !u.tasks.contains_key("t0"),
            "the least recently used task goes"
        );
    }
}
