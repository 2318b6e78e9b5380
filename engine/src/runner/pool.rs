//! Runs independent jobs (one process each) on a fixed number of worker threads, reporting each
//! result in completion order on the calling thread (where progress is printed).

use std::collections::VecDeque;
use std::sync::{Mutex, mpsc};

use crate::interrupt;

/// Runs `work` on every item with at most `jobs` at once and calls `done` with each result as it
/// completes. After Ctrl-C no new item is started; the ones running finish (they got the signal).
pub fn run_parallel<T, R>(jobs: usize, items: Vec<T>, work: impl Fn(T) -> R + Sync, mut done: impl FnMut(R))
where
    T: Send,
    R: Send,
{
    let queue = Mutex::new(items.into_iter().collect::<VecDeque<T>>());
    let (tx, rx) = mpsc::channel::<R>();
    std::thread::scope(|scope| {
        for _ in 0..jobs.max(1) {
            let tx = tx.clone();
            let (queue, work) = (&queue, &work);
            scope.spawn(move || {
                loop {
                    if interrupt::interrupted() {
                        break;
                    }
                    let next = queue.lock().map(|mut q| q.pop_front()).unwrap_or(None);
                    let Some(item) = next else { break };
                    if tx.send(work(item)).is_err() {
                        break;
                    }
                }
            });
        }
        drop(tx);
        for r in rx {
            done(r);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_every_item_once() {
        let mut seen = Vec::new();
        run_parallel(3, (0..50).collect(), |i: u32| i * 2, |r| seen.push(r));
        seen.sort();
        assert_eq!(seen, (0..50).map(|i| i * 2).collect::<Vec<_>>());
    }
}
