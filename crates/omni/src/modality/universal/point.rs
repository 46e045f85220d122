//! Farthest point sampling and k-nearest neighbours, as OneLLM's point tokenizer uses
//! them (reference: `model/lib/point_utils.py`, the pointnet2 `furthest_point_sampling`
//! kernel and `torch.cdist` + `topk`).

use crate::{Error, Result};

fn squared_distance(a: &[f32; 3], b: &[f32; 3]) -> f32 {
    let (dx, dy, dz) = (b[0] - a[0], b[1] - a[1], b[2] - a[2]);
    dx * dx + dy * dy + dz * dz
}

/// Indices of `m` points of `points`, each the farthest from those already chosen,
/// starting at point 0 (the pointnet2 kernel: a running minimum distance per point, the
/// first maximum wins).
pub fn farthest_point_sample(points: &[[f32; 3]], m: usize) -> Result<Vec<usize>> {
    if m == 0 || m > points.len() {
        return Err(Error::InvalidInput(format!(
            "cannot sample {m} centres from a cloud of {} points",
            points.len()
        )));
    }
    let mut nearest = vec![1e10f32; points.len()];
    let mut chosen = Vec::with_capacity(m);
    let mut last = 0;
    chosen.push(last);
    for _ in 1..m {
        let from = points[last];
        let (mut best, mut best_i) = (-1f32, 0);
        for (i, (p, d)) in points.iter().zip(nearest.iter_mut()).enumerate() {
            *d = d.min(squared_distance(&from, p));
            if *d > best {
                best = *d;
                best_i = i;
            }
        }
        last = best_i;
        chosen.push(last);
    }
    Ok(chosen)
}

/// For each query, the indices of its `k` nearest `points` (itself included when it is
/// one of them), nearest first, ties to the lower index.
pub fn k_nearest(points: &[[f32; 3]], queries: &[[f32; 3]], k: usize) -> Result<Vec<Vec<usize>>> {
    if k == 0 || k > points.len() {
        return Err(Error::InvalidInput(format!(
            "cannot group {k} neighbours from a cloud of {} points",
            points.len()
        )));
    }
    let mut order: Vec<(f32, usize)> = Vec::with_capacity(points.len());
    Ok(queries
        .iter()
        .map(|q| {
            order.clear();
            order.extend(
                points
                    .iter()
                    .enumerate()
                    .map(|(i, p)| (squared_distance(q, p), i)),
            );
            order.select_nth_unstable_by(k - 1, |a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            let mut near: Vec<(f32, usize)> = order[..k].to_vec();
            near.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            near.into_iter().map(|(_, i)| i).collect()
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fps_spreads_out_and_knn_finds_the_neighbours() {
        let line: Vec<[f32; 3]> = (0..10).map(|i| [i as f32, 0.0, 0.0]).collect();
        assert_eq!(farthest_point_sample(&line, 3).unwrap(), vec![0, 9, 4]);
        let near = k_nearest(&line, &[[4.2, 0.0, 0.0]], 3).unwrap();
        assert_eq!(near, vec![vec![4, 5, 3]]);
        assert!(farthest_point_sample(&line, 11).is_err());
        assert!(k_nearest(&line, &[[0.0; 3]], 0).is_err());
    }
}
