//! Exact (brute-force) top-k: one dot product per row of the contiguous matrix, rows
//! split across threads, each keeping a bounded min-heap; the right choice below ~100k
//! vectors and the ground truth for the graph's recall.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use rayon::prelude::*;

use super::simd::dot;

/// Rows per parallel task.
const CHUNK: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq)]
struct Item(f32, u32);
impl Eq for Item {}
impl PartialOrd for Item {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Item {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&o.0).then(o.1.cmp(&self.1))
    }
}

fn push(heap: &mut BinaryHeap<Reverse<Item>>, k: usize, it: Item) {
    if heap.len() < k {
        heap.push(Reverse(it));
    } else if heap.peek().is_some_and(|w| it > w.0) {
        heap.pop();
        heap.push(Reverse(it));
    }
}

/// The `k` accepted rows of `matrix` (`dim` columns) most similar to `q`, best first.
pub(crate) fn top_k(
    matrix: &[f32],
    dim: usize,
    q: &[f32],
    k: usize,
    accept: &(dyn Fn(u32) -> bool + Sync),
) -> Vec<(u32, f32)> {
    if k == 0 || dim == 0 {
        return Vec::new();
    }
    let heaps: Vec<BinaryHeap<Reverse<Item>>> = matrix
        .par_chunks(CHUNK * dim)
        .enumerate()
        .map(|(c, block)| {
            let mut heap = BinaryHeap::with_capacity(k + 1);
            for (j, row) in block.chunks_exact(dim).enumerate() {
                let i = (c * CHUNK + j) as u32;
                if accept(i) {
                    push(&mut heap, k, Item(dot(q, row), i));
                }
            }
            heap
        })
        .collect();
    let mut all = BinaryHeap::with_capacity(k + 1);
    for h in heaps {
        for Reverse(it) in h {
            push(&mut all, k, it);
        }
    }
    let mut out: Vec<Item> = all.into_iter().map(|r| r.0).collect();
    out.sort_unstable_by(|a, b| b.cmp(a));
    out.into_iter().map(|it| (it.1, it.0)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_best_rows_in_order() {
        // Rows e_0..e_3 scaled; the query is e_2 + 0.5 e_1.
        let dim = 4;
        let mut m = vec![0f32; 16];
        for i in 0..4 {
            m[i * dim + i] = 1.0;
        }
        let q = [0.0, 0.5, 1.0, 0.0];
        let got = top_k(&m, dim, &q, 2, &|_| true);
        assert_eq!(got, vec![(2, 1.0), (1, 0.5)]);
        let got = top_k(&m, dim, &q, 10, &|i| i != 2);
        assert_eq!(got.len(), 3);
        assert_eq!(got[0], (1, 0.5));
    }
}
