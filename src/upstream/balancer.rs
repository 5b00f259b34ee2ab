//! Picking a member of an endpoint group. Round-robin cursors are per shard and per group
//! (plain `Cell`s: no atomics); a shard's cursor starts at `shard_index mod n`, so with one
//! worker the rotation starts at `urls[0]` and walks the URLs in order.

use std::cell::Cell;

use crate::compile::config::endpoint::GroupKind;
use crate::upstream::Group;

/// One shard's round-robin positions, indexed by `GroupId`.
pub struct RoundRobinCursors {
    next: Vec<Cell<u32>>,
}

impl RoundRobinCursors {
    pub fn new(groups: &[Group], shard_index: usize) -> Self {
        Self {
            next: groups
                .iter()
                .map(|g| Cell::new((shard_index % g.members.len().max(1)) as u32))
                .collect(),
        }
    }

    /// The order in which to try the members of `group` for one request: the first entry is
    /// the pick, the rest are the candidates for retries. `state(i)` says whether member i
    /// may be tried now; suspended members are skipped without taking a turn, and are tried
    /// last, in group order, only when nobody else is left; excluded (drained) members are
    /// never tried.
    pub fn plan(
        &self,
        group_id: usize,
        group: &Group,
        state: impl Fn(usize) -> MemberState,
        out: &mut AttemptPlan,
    ) {
        out.clear();
        let usable = |i: usize| state(i) == MemberState::Usable;
        let n = group.members.len();
        match group.kind {
            GroupKind::Failover => {
                out.extend((0..n).filter(|&i| usable(i)));
            }
            GroupKind::LoadBalance => {
                let cursor = &self.next[group_id];
                let start = cursor.get() as usize % n;
                let first = (0..n).map(|k| (start + k) % n).find(|&i| usable(i));
                if let Some(first) = first {
                    cursor.set(((first + 1) % n) as u32);
                    out.extend((0..n).map(|k| (first + k) % n).filter(|&i| usable(i)));
                }
            }
        }
        out.usable = out.order.len();
        // Everything suspended (or the rest of the list): try them anyway, in group order; a
        // recovered endpoint is found at once.
        for i in 0..n {
            if state(i) == MemberState::Suspended {
                out.push(i);
            }
        }
    }
}

/// What a request may do with a member of its group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemberState {
    /// Healthy, or its suspension is over (a probe may be due).
    Usable,
    /// Suspended: tried only when no usable member is left.
    Suspended,
    /// Taken out of service by the admin API: never tried.
    Excluded,
}

/// Member indices in the order to try them. Reused across requests (no allocation once
/// grown to the largest group).
#[derive(Default)]
pub struct AttemptPlan {
    order: Vec<u16>,
    /// The first `usable` entries are usable members; the rest are suspended ones.
    usable: usize,
}

impl AttemptPlan {
    fn clear(&mut self) {
        self.order.clear();
        self.usable = 0;
    }

    /// The member at `position` of the plan.
    pub fn get(&self, position: usize) -> Option<usize> {
        self.order.get(position).map(|&m| usize::from(m))
    }

    /// How many leading entries are usable (not suspended) members.
    pub fn usable(&self) -> usize {
        self.usable
    }

    fn push(&mut self, member: usize) {
        self.order.push(member as u16);
    }

    fn extend(&mut self, members: impl Iterator<Item = usize>) {
        self.order.extend(members.map(|m| m as u16));
    }

    pub fn members(&self) -> impl Iterator<Item = usize> + '_ {
        self.order.iter().map(|&m| usize::from(m))
    }

    pub fn first(&self) -> Option<usize> {
        self.order.first().map(|&m| usize::from(m))
    }

    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{ApiId, EndpointId};
    use crate::upstream::GroupMember;

    fn group(kind: GroupKind, n: u32) -> Group {
        Group {
            api: ApiId(0),
            kind,
            members: (0..n)
                .map(|i| GroupMember {
                    endpoint: EndpointId(i),
                    base_path: Box::default(),
                })
                .collect(),
            timeout_ms: 1000,
            retry: None,
            circuit_breakers: None,
            authorization: None,
            suspension: crate::upstream::health::SuspensionPolicy::default(),
            health_check: None,
            http2: false,
        }
    }

    /// `usable(i)`: usable or suspended.
    fn states(usable: impl Fn(usize) -> bool + Copy) -> impl Fn(usize) -> MemberState + Copy {
        move |i| {
            if usable(i) {
                MemberState::Usable
            } else {
                MemberState::Suspended
            }
        }
    }

    fn picks(
        cursors: &RoundRobinCursors,
        g: &Group,
        usable: impl Fn(usize) -> bool + Copy,
        count: usize,
    ) -> Vec<usize> {
        let mut plan = AttemptPlan::default();
        (0..count)
            .map(|_| {
                cursors.plan(0, g, states(usable), &mut plan);
                plan.first().unwrap()
            })
            .collect()
    }

    #[test]
    fn one_worker_rotates_in_url_order_from_the_first() {
        let g = group(GroupKind::LoadBalance, 3);
        let cursors = RoundRobinCursors::new(std::slice::from_ref(&g), 0);
        assert_eq!(picks(&cursors, &g, |_| true, 7), vec![0, 1, 2, 0, 1, 2, 0]);
    }

    #[test]
    fn each_shard_starts_at_its_index() {
        let g = group(GroupKind::LoadBalance, 3);
        let cursors = RoundRobinCursors::new(std::slice::from_ref(&g), 4);
        assert_eq!(picks(&cursors, &g, |_| true, 4), vec![1, 2, 0, 1]);
    }

    #[test]
    fn suspended_members_are_skipped_without_taking_a_turn() {
        let g = group(GroupKind::LoadBalance, 3);
        let cursors = RoundRobinCursors::new(std::slice::from_ref(&g), 0);
        assert_eq!(picks(&cursors, &g, |i| i != 1, 6), vec![0, 2, 0, 2, 0, 2]);
    }

    #[test]
    fn plan_lists_retry_candidates_and_suspended_members_last() {
        let g = group(GroupKind::LoadBalance, 4);
        let cursors = RoundRobinCursors::new(std::slice::from_ref(&g), 1);
        let mut plan = AttemptPlan::default();
        cursors.plan(0, &g, states(|i| i != 2), &mut plan);
        assert_eq!(plan.members().collect::<Vec<_>>(), vec![1, 3, 0, 2]);
        assert_eq!(plan.usable(), 3);
    }

    #[test]
    fn failover_prefers_the_first_usable_in_order() {
        let g = group(GroupKind::Failover, 3);
        let cursors = RoundRobinCursors::new(std::slice::from_ref(&g), 1);
        assert_eq!(picks(&cursors, &g, |_| true, 3), vec![0, 0, 0]);
        assert_eq!(picks(&cursors, &g, |i| i != 0, 2), vec![1, 1]);
        let mut plan = AttemptPlan::default();
        cursors.plan(0, &g, states(|i| i == 2), &mut plan);
        assert_eq!(plan.members().collect::<Vec<_>>(), vec![2, 0, 1]);
    }

    #[test]
    fn all_suspended_tries_every_member_in_group_order() {
        let g = group(GroupKind::LoadBalance, 3);
        let cursors = RoundRobinCursors::new(std::slice::from_ref(&g), 2);
        let mut plan = AttemptPlan::default();
        cursors.plan(0, &g, states(|_| false), &mut plan);
        assert_eq!(plan.members().collect::<Vec<_>>(), vec![0, 1, 2]);
        assert_eq!(plan.usable(), 0);
    }

    #[test]
    fn excluded_members_are_never_planned() {
        let g = group(GroupKind::Failover, 3);
        let cursors = RoundRobinCursors::new(std::slice::from_ref(&g), 0);
        let mut plan = AttemptPlan::default();
        let state = |i| match i {
            0 => MemberState::Excluded,
            1 => MemberState::Suspended,
            _ => MemberState::Usable,
        };
        cursors.plan(0, &g, state, &mut plan);
        assert_eq!(plan.members().collect::<Vec<_>>(), vec![2, 1]);
        let lb = group(GroupKind::LoadBalance, 3);
        let cursors = RoundRobinCursors::new(std::slice::from_ref(&lb), 0);
        cursors.plan(0, &lb, |_| MemberState::Excluded, &mut plan);
        assert!(plan.is_empty());
    }
}
