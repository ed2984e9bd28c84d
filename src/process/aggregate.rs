//! Sums over processes: per (group, subgroup), and per container, pod,
//! systemd unit and user.
//!
//! Gauges (memory, process counts, threads, descriptors) cover the live
//! processes of one scrape. Counters (CPU time, I/O, page faults, context
//! switches) add to the live processes' own counters the last values of
//! processes that left: exited, or reclassified or moved elsewhere, which
//! keeps them from going down when a member leaves (`rate()` would read
//! that as a reset). The one who leaves takes nothing with it: the sum it
//! leaves keeps its last values, and where it goes it counts in full, as a
//! process seen there first would.
//!
//! Groups are bounded by the rules, so a group keeps its counters after
//! its last member leaves. Containers, pods, units and users are not
//! bounded (every container started adds one), so one with no live process
//! is forgotten, and its series end.

use std::collections::HashMap;
use std::sync::Arc;

use crate::config::Dimension;

use super::placement::Placed;
use super::view::{state_index, EntityView, GroupView, ProcView, Totals};

impl GroupView {
    fn empty(group: &Arc<str>, subgroup: &Arc<str>) -> GroupView {
        GroupView {
            group: group.clone(),
            subgroup: subgroup.clone(),
            members: 0,
            rss: 0,
            pss: 0,
            swap: 0,
            cpu_rate: 0.0,
            totals: Totals::default(),
            threads: 0,
            vsize: 0,
            states: [0; 5],
            open_fds: None,
            worst_fd_ratio: None,
            oldest_start: None,
        }
    }

    fn add(&mut self, p: &ProcView) {
        self.members += 1;
        self.rss = self.rss.saturating_add(p.rss);
        if let Some((sm, _)) = p.smaps {
            self.pss = self.pss.saturating_add(sm.pss);
            self.swap = self.swap.saturating_add(sm.swap);
        }
        self.cpu_rate += p.cpu_rate.unwrap_or(0.0);
        self.totals.add(&p.totals);
        self.threads = self.threads.saturating_add(p.threads);
        self.vsize = self.vsize.saturating_add(p.vsize);
        self.states[state_index(p.state)] += 1;
        if let Some(n) = p.open_fds {
            self.open_fds = Some(self.open_fds.unwrap_or(0).saturating_add(n));
            if let Some(ratio) = p.fd_ratio() {
                self.worst_fd_ratio = Some(self.worst_fd_ratio.map_or(ratio, |w| w.max(ratio)));
            }
        }
        self.oldest_start = Some(
            self.oldest_start
                .map_or(p.starttime, |o| o.min(p.starttime)),
        );
    }
}

/// Per (group, subgroup): the live members, plus the counters `exited`
/// carries for groups that lost members.
pub fn groups(
    procs: &[ProcView],
    exited: &HashMap<(Arc<str>, Arc<str>), Totals>,
) -> Vec<GroupView> {
    let mut groups: HashMap<(Arc<str>, Arc<str>), GroupView> = HashMap::new();
    for p in procs {
        groups
            .entry((p.group.clone(), p.subgroup.clone()))
            .or_insert_with(|| GroupView::empty(&p.group, &p.subgroup))
            .add(p);
    }
    for ((gr, sg), t) in exited {
        groups
            .entry((gr.clone(), sg.clone()))
            .or_insert_with(|| GroupView::empty(gr, sg))
            .totals
            .add(t);
    }
    let mut out: Vec<GroupView> = groups.into_values().collect();
    out.sort_by(|a, b| (&a.group, &a.subgroup).cmp(&(&b.group, &b.subgroup)));
    out
}

/// The container, pod, unit or user a process counts in, by `dim`: the
/// container and pod ids, the unit name, the user name.
pub fn entity_id(dim: Dimension, placed: &Placed) -> Option<&str> {
    let identity = placed.attribution.as_deref().map(|a| &a.identity);
    match dim {
        Dimension::Container => identity?.container.as_ref().map(|c| c.id.as_str()),
        Dimension::Pod => identity?.pod.as_ref().map(|p| p.uid.as_str()),
        Dimension::Unit => identity?.unit.as_ref().map(|u| u.unit.as_str()),
        Dimension::User => placed.user.as_deref(),
    }
}

impl EntityView {
    fn new(dim: Dimension, id: &str, p: &ProcView) -> EntityView {
        let attribution = p.placed.attribution.clone();
        let identity = attribution.as_deref().map(|a| &a.identity);
        let mut labels = Vec::new();
        match dim {
            Dimension::Container => {
                labels.push(("container_id", id.to_string()));
                if let Some(c) = identity.and_then(|i| i.container.as_ref()) {
                    labels.push(("container_runtime", c.runtime.as_str().to_string()));
                }
                if let Some(pod) = identity.and_then(|i| i.pod.as_ref()) {
                    labels.push(("pod_uid", pod.uid.clone()));
                }
            }
            Dimension::Pod => {
                labels.push(("pod_uid", id.to_string()));
                if let Some(pod) = identity.and_then(|i| i.pod.as_ref()) {
                    labels.push(("qos_class", pod.qos.as_str().to_string()));
                }
            }
            Dimension::Unit => labels.push(("unit", id.to_string())),
            Dimension::User => labels.push(("user", id.to_string())),
        }
        EntityView {
            dim,
            id: id.to_string(),
            labels,
            members: 0,
            rss: 0,
            pss: 0,
            uss: 0,
            swap: 0,
            totals: Totals::default(),
            attribution: (dim != Dimension::User).then_some(attribution).flatten(),
        }
    }

    fn add(&mut self, p: &ProcView) {
        self.members += 1;
        self.rss = self.rss.saturating_add(p.rss);
        if let Some((sm, _)) = p.smaps {
            self.pss = self.pss.saturating_add(sm.pss);
            self.uss = self.uss.saturating_add(sm.uss);
            self.swap = self.swap.saturating_add(sm.swap);
        }
        self.totals.add(&p.totals);
    }
}

/// The counters of processes that left a container, pod, unit or user,
/// per dimension and id.
#[derive(Debug, Default)]
pub struct Carried([HashMap<Box<str>, Totals>; 4]);

impl Carried {
    fn of(&mut self, dim: Dimension) -> &mut HashMap<Box<str>, Totals> {
        &mut self.0[dim as usize]
    }

    /// Keep `t`, the last values of a process that left entity `id`.
    pub fn retire(&mut self, dim: Dimension, id: &str, t: &Totals) {
        let map = self.of(dim);
        match map.get_mut(id) {
            Some(sum) => sum.add(t),
            None => {
                map.insert(id.into(), *t);
            }
        }
    }

    /// Entities carried, for tests.
    pub fn len(&self) -> usize {
        self.0.iter().map(HashMap::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Per entity of each of `dims`, sorted by dimension and labels. Entities
/// with no live member are dropped, and so are their carried counters.
pub fn entities(procs: &[ProcView], dims: &[Dimension], carried: &mut Carried) -> Vec<EntityView> {
    let mut out = Vec::new();
    for &dim in dims {
        let mut live: HashMap<&str, EntityView> = HashMap::new();
        for p in procs {
            if let Some(id) = entity_id(dim, &p.placed) {
                live.entry(id)
                    .or_insert_with(|| EntityView::new(dim, id, p))
                    .add(p);
            }
        }
        let left = carried.of(dim);
        left.retain(|id, _| live.contains_key(&**id));
        for (id, t) in left.iter() {
            if let Some(e) = live.get_mut(&**id) {
                e.totals.add(t);
            }
        }
        let mut views: Vec<EntityView> = live.into_values().collect();
        views.sort_by(|a, b| a.labels.cmp(&b.labels));
        out.extend(views);
    }
    // Every dimension's carried counters are pruned, enabled or not.
    for dim in Dimension::ALL {
        if !dims.contains(&dim) {
            carried.of(dim).clear();
        }
    }
    out
}
