//! Which queued job starts next, across watch roots: a pure data structure,
//! no actors and no clocks, so that the policy is tested on its own.
//!
//! A job is eligible while its root runs fewer jobs than the root's
//! concurrency and the host runs fewer than its global cap. Among eligible
//! jobs the next one is the first by:
//!
//! 1. root priority, higher first;
//! 2. manifest priority, higher first;
//! 3. fair share: the root that has started the least work for its weight
//!    (stride scheduling: each start advances the root's *pass* by
//!    `1 / weight`; the lowest pass goes first);
//! 4. arrival order (FIFO).
//!
//! Priorities are strict: a root of higher priority with work queued always
//! goes first. Fair share arbitrates between roots of equal priority, and
//! only matters when the global cap is below the sum of the roots'
//! concurrencies (otherwise every root can always run its own share).
//!
//! A root that had nothing queued or running rejoins at the current virtual
//! time (the pass of the last start), not at the pass it left with: a root
//! idle for an hour does not get an hour of catching up and starve the
//! others. This is the rule CFS applies with `min_vruntime`.
//!
//! ```
//! use deliver::schedule::{RootPolicy, Schedule};
//!
//! let policy = |weight| RootPolicy { priority: 0, weight, concurrency: 8 };
//! let mut s = Schedule::new(&[policy(2.0), policy(1.0)], Some(1));
//! for i in 0..6 {
//!     s.push(0, 0, format!("a{i}"));
//!     s.push(1, 0, format!("b{i}"));
//! }
//! let mut order = Vec::new();
//! while let Some(started) = s.pop() {
//!     order.push(started.item);
//!     s.done(started.root);
//! }
//! // Ties go to the older job: a, b, a, b, then two of a for each of b.
//! assert_eq!(&order[..9], ["a0", "b0", "a1", "b1", "a2", "a3", "b2", "a4", "a5"]);
//! ```

/// What the schedule needs to know about a root.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RootPolicy {
    /// Higher first, before manifest priorities.
    pub priority: i32,
    /// Fair-share weight, greater than 0: a root of weight 2 starts twice as
    /// many jobs as a root of weight 1 when both have work queued.
    pub weight: f64,
    /// Jobs of this root at once (at least 1).
    pub concurrency: usize,
}

#[derive(Debug)]
struct RootState {
    policy: RootPolicy,
    running: usize,
    queued: usize,
    /// Work started, in units of `1 / weight` per job.
    pass: f64,
}

impl RootState {
    fn active(&self) -> bool {
        self.running > 0 || self.queued > 0
    }
}

#[derive(Debug)]
struct Entry<T> {
    root: usize,
    priority: i32,
    seq: u64,
    item: T,
}

/// A job the schedule chose to start.
#[derive(Debug, PartialEq)]
pub struct Started<T> {
    pub root: usize,
    /// The job's manifest priority, as pushed.
    pub priority: i32,
    /// Its place in arrival order; pass it to [`Schedule::push_again`] to
    /// queue the job again in its old place.
    pub seq: u64,
    pub item: T,
}

/// The queued jobs of every root and what each root runs.
#[derive(Debug)]
pub struct Schedule<T> {
    roots: Vec<RootState>,
    queue: Vec<Entry<T>>,
    next_seq: u64,
    cap: usize,
    running: usize,
    /// The pass of the latest start: where a root that was idle rejoins.
    vtime: f64,
}

impl<T> Schedule<T> {
    /// A schedule over `roots` (indexed as given). `max_jobs` caps the jobs
    /// running across all roots; `None`: the sum of the roots' concurrencies.
    /// Concurrencies below 1 count as 1 and weights that are not positive
    /// numbers as 1 (the watch configuration refuses both).
    pub fn new(roots: &[RootPolicy], max_jobs: Option<usize>) -> Self {
        let roots: Vec<RootState> = roots
            .iter()
            .map(|p| RootState {
                policy: RootPolicy {
                    priority: p.priority,
                    weight: if p.weight.is_finite() && p.weight > 0.0 {
                        p.weight
                    } else {
                        1.0
                    },
                    concurrency: p.concurrency.max(1),
                },
                running: 0,
                queued: 0,
                pass: 0.0,
            })
            .collect();
        let sum = roots.iter().map(|r| r.policy.concurrency).sum::<usize>();
        Schedule {
            roots,
            queue: Vec::new(),
            next_seq: 0,
            cap: max_jobs.unwrap_or(sum).max(1),
            running: 0,
            vtime: 0.0,
        }
    }

    /// Queues `item` for `root` with manifest priority `priority`; returns
    /// its place in arrival order.
    ///
    /// # Panics
    /// If `root` is not an index of the roots the schedule was made with.
    pub fn push(&mut self, root: usize, priority: i32, item: T) -> u64 {
        let seq = self.next_seq;
        self.push_again(root, priority, seq, item);
        seq
    }

    /// Queues `item` again at its old place `seq` in arrival order (a job
    /// that waited for a plugin does not go to the back of the line).
    ///
    /// # Panics
    /// If `root` is not an index of the roots the schedule was made with.
    pub fn push_again(&mut self, root: usize, priority: i32, seq: u64, item: T) {
        let vtime = self.vtime;
        let r = &mut self.roots[root];
        if !r.active() {
            r.pass = r.pass.max(vtime);
        }
        r.queued += 1;
        self.next_seq = self.next_seq.max(seq + 1);
        self.queue.push(Entry {
            root,
            priority,
            seq,
            item,
        });
    }

    /// Takes the next job to start, if a slot is free and a job is eligible,
    /// and counts it as running until [`Schedule::done`].
    pub fn pop(&mut self) -> Option<Started<T>> {
        if self.running >= self.cap {
            return None;
        }
        let mut best: Option<usize> = None;
        for (i, e) in self.queue.iter().enumerate() {
            let r = &self.roots[e.root];
            if r.running >= r.policy.concurrency {
                continue;
            }
            let better = match best {
                None => true,
                Some(b) => self.before(e, &self.queue[b]),
            };
            if better {
                best = Some(i);
            }
        }
        let e = self.queue.remove(best?);
        let r = &mut self.roots[e.root];
        r.queued -= 1;
        r.running += 1;
        self.vtime = self.vtime.max(r.pass);
        r.pass += 1.0 / r.policy.weight;
        self.running += 1;
        Some(Started {
            root: e.root,
            priority: e.priority,
            seq: e.seq,
            item: e.item,
        })
    }

    /// Whether `a` starts before `b`.
    fn before(&self, a: &Entry<T>, b: &Entry<T>) -> bool {
        let (ra, rb) = (&self.roots[a.root], &self.roots[b.root]);
        let pa = (ra.policy.priority, a.priority);
        let pb = (rb.policy.priority, b.priority);
        if pa != pb {
            return pa > pb;
        }
        if ra.pass != rb.pass {
            return ra.pass < rb.pass;
        }
        a.seq < b.seq
    }

    /// A job of `root` that [`Schedule::pop`] returned has ended (or gave
    /// its slot back to wait).
    pub fn done(&mut self, root: usize) {
        let r = &mut self.roots[root];
        if r.running > 0 {
            r.running -= 1;
            self.running -= 1;
        }
    }

    /// Removes and returns the newest queued job for which `matches` holds.
    pub fn remove_newest(&mut self, matches: impl Fn(usize, &T) -> bool) -> Option<T> {
        let pos = self
            .queue
            .iter()
            .enumerate()
            .filter(|(_, e)| matches(e.root, &e.item))
            .max_by_key(|(_, e)| e.seq)
            .map(|(i, _)| i)?;
        let e = self.queue.remove(pos);
        self.roots[e.root].queued -= 1;
        Some(e.item)
    }

    /// Jobs queued, across roots.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Jobs running, across roots.
    pub fn running(&self) -> usize {
        self.running
    }

    /// Jobs of `root` running.
    pub fn running_in(&self, root: usize) -> usize {
        self.roots[root].running
    }

    /// The cap on jobs running across roots.
    pub fn cap(&self) -> usize {
        self.cap
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(priority: i32, weight: f64, concurrency: usize) -> RootPolicy {
        RootPolicy {
            priority,
            weight,
            concurrency,
        }
    }

    /// Starts jobs until none can start; returns their items.
    fn drain<T>(s: &mut Schedule<T>) -> Vec<Started<T>> {
        std::iter::from_fn(|| s.pop()).collect()
    }

    #[test]
    fn fifo_within_equal_priority() {
        let mut s = Schedule::new(&[policy(0, 1.0, 1)], None);
        for i in 0..5 {
            s.push(0, 50, i);
        }
        let mut order = Vec::new();
        while let Some(j) = s.pop() {
            order.push(j.item);
            s.done(j.root);
        }
        assert_eq!(order, [0, 1, 2, 3, 4]);
    }

    #[test]
    fn manifest_priority_orders_a_root_and_root_priority_comes_first() {
        let mut s = Schedule::new(&[policy(0, 1.0, 1), policy(10, 1.0, 1)], Some(1));
        s.push(0, 50, "low root, default");
        s.push(0, 100, "low root, urgent");
        s.push(0, 50, "low root, default 2");
        s.push(1, 0, "high root, least urgent");
        let mut order = Vec::new();
        while let Some(j) = s.pop() {
            order.push(j.item);
            s.done(j.root);
        }
        assert_eq!(
            order,
            [
                // The root's priority beats any manifest priority.
                "high root, least urgent",
                "low root, urgent",
                "low root, default",
                "low root, default 2"
            ]
        );
    }

    #[test]
    fn per_root_and_global_limits_hold() {
        let mut s = Schedule::new(&[policy(0, 1.0, 2), policy(0, 1.0, 1)], None);
        assert_eq!(s.cap(), 3);
        for i in 0..5 {
            s.push(0, 0, ("a", i));
            s.push(1, 0, ("b", i));
        }
        let started = drain(&mut s);
        assert_eq!(started.len(), 3);
        assert_eq!((s.running_in(0), s.running_in(1)), (2, 1));
        // A free slot of root b is not taken by root a.
        s.done(1);
        let next = s.pop().unwrap();
        assert_eq!((next.root, next.item), (1, ("b", 1)));
        assert!(s.pop().is_none());

        // A global cap below the sum: the roots share it.
        let mut s = Schedule::new(&[policy(0, 1.0, 4), policy(0, 1.0, 4)], Some(2));
        for i in 0..5 {
            s.push(0, 0, i);
            s.push(1, 0, i);
        }
        let started = drain(&mut s);
        assert_eq!(started.iter().map(|j| j.root).collect::<Vec<_>>(), [0, 1]);
    }

    #[test]
    fn a_higher_priority_root_at_its_limit_lets_others_run() {
        let mut s = Schedule::new(&[policy(10, 1.0, 1), policy(0, 1.0, 1)], None);
        s.push(0, 0, "urgent 1");
        s.push(0, 0, "urgent 2");
        s.push(1, 0, "normal");
        let started: Vec<_> = drain(&mut s).into_iter().map(|j| j.item).collect();
        assert_eq!(started, ["urgent 1", "normal"]);
    }

    /// Keeps `running` jobs going: each round starts what can start, then
    /// ends the oldest running job. Returns the roots of the first `starts`
    /// jobs started.
    fn under_load(s: &mut Schedule<usize>, starts: usize) -> Vec<usize> {
        let mut running = std::collections::VecDeque::new();
        let mut roots = Vec::new();
        while roots.len() < starts {
            while let Some(j) = s.pop() {
                roots.push(j.root);
                running.push_back(j.root);
            }
            let root = running.pop_front().expect("something runs");
            s.done(root);
        }
        roots.truncate(starts);
        roots
    }

    #[test]
    fn weights_two_to_one_give_two_to_one_starts_under_load() {
        let mut s = Schedule::new(&[policy(0, 2.0, 4), policy(0, 1.0, 4)], Some(3));
        for i in 0..1000 {
            s.push(0, 0, i);
            s.push(1, 0, i);
        }
        let roots = under_load(&mut s, 300);
        let a = roots.iter().filter(|&&r| r == 0).count();
        let b = roots.len() - a;
        // Stride scheduling is exact to one job per root over any window.
        assert!((199..=201).contains(&a), "a {a}, b {b}");
        assert!((99..=101).contains(&b), "a {a}, b {b}");
        // And over short windows too: never three of b's in a row.
        assert!(!roots.windows(3).any(|w| w == [1, 1, 1]), "{roots:?}");
    }

    #[test]
    fn a_busy_root_cannot_starve_another() {
        // Root a has ten times the weight and a thousand jobs; root b's one
        // job, queued late, still starts within the next eleven starts.
        let mut s = Schedule::new(&[policy(0, 10.0, 8), policy(0, 1.0, 8)], Some(1));
        for i in 0..1000 {
            s.push(0, 0, i);
        }
        let first = under_load(&mut s, 500);
        assert!(first.iter().all(|&r| r == 0));
        s.push(1, 0, 9999);
        let next = under_load(&mut s, 12);
        let at = next.iter().position(|&r| r == 1);
        assert!(at.is_some_and(|i| i <= 11), "{next:?}");
    }

    #[test]
    fn a_root_back_from_idle_gets_its_share_not_a_backlog() {
        let mut s = Schedule::new(&[policy(0, 1.0, 8), policy(0, 1.0, 8)], Some(1));
        for i in 0..1000 {
            s.push(0, 0, i);
        }
        under_load(&mut s, 300);
        // Root b was idle while a started 300 jobs; now both have work: b
        // gets half the starts, not the next 300.
        for i in 0..100 {
            s.push(1, 0, i);
        }
        let next = under_load(&mut s, 40);
        let b = next.iter().filter(|&&r| r == 1).count();
        assert!((19..=21).contains(&b), "{next:?}");
    }

    #[test]
    fn a_job_pushed_again_keeps_its_place_and_cancel_takes_the_newest() {
        let mut s = Schedule::new(&[policy(0, 1.0, 1)], None);
        let first = s.push(0, 0, "first");
        s.push(0, 0, "second");
        let j = s.pop().unwrap();
        assert_eq!((j.item, j.seq), ("first", first));
        // It gave its slot back to wait, then came back.
        s.done(0);
        s.push(0, 0, "third");
        s.push_again(0, 0, j.seq, j.item);
        assert_eq!(s.queued(), 3);
        assert_eq!(s.remove_newest(|_, _| true), Some("third"));
        assert_eq!(s.pop().unwrap().item, "first");
        assert_eq!(s.running(), 1);
        assert!(s.pop().is_none());
    }
}
