//! Dot products over f32 rows: AVX2+FMA when the CPU has them (chosen once at run
//! time), else a portable kernel with eight partial sums that compilers vectorise.

use std::sync::OnceLock;

type DotFn = fn(&[f32], &[f32]) -> f32;

/// `Σ a[i]·b[i]` over the shorter of the two slices.
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    static KERNEL: OnceLock<DotFn> = OnceLock::new();
    (KERNEL.get_or_init(pick))(a, b)
}

fn pick() -> DotFn {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        return dot_avx2;
    }
    dot_portable
}

/// The portable kernel, inlined so that it vectorises under a caller's target features.
#[inline(always)]
pub(crate) fn dot_portable(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0f32; 8];
    let mut ca = a.chunks_exact(8);
    let mut cb = b.chunks_exact(8);
    for (x, y) in (&mut ca).zip(&mut cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    acc.iter().sum::<f32>() + tail
}

#[cfg(target_arch = "x86_64")]
fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
    // SAFETY: only chosen by `pick` when the CPU has AVX2 and FMA.
    unsafe { avx2::dot(a, b) }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    #[target_feature(enable = "avx2,fma")]
    pub(super) fn dot(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len().min(b.len());
        let mut acc0 = _mm256_setzero_ps();
        let mut acc1 = _mm256_setzero_ps();
        let mut i = 0;
        // SAFETY: every load reads 8 floats at i..i+8 with i + 8 <= n (or i + 16 <= n).
        unsafe {
            while i + 16 <= n {
                let x0 = _mm256_loadu_ps(a.as_ptr().add(i));
                let y0 = _mm256_loadu_ps(b.as_ptr().add(i));
                let x1 = _mm256_loadu_ps(a.as_ptr().add(i + 8));
                let y1 = _mm256_loadu_ps(b.as_ptr().add(i + 8));
                acc0 = _mm256_fmadd_ps(x0, y0, acc0);
                acc1 = _mm256_fmadd_ps(x1, y1, acc1);
                i += 16;
            }
            if i + 8 <= n {
                let x0 = _mm256_loadu_ps(a.as_ptr().add(i));
                let y0 = _mm256_loadu_ps(b.as_ptr().add(i));
                acc0 = _mm256_fmadd_ps(x0, y0, acc0);
                i += 8;
            }
        }
        let acc = _mm256_add_ps(acc0, acc1);
        let hi = _mm256_extractf128_ps(acc, 1);
        let lo = _mm256_castps256_ps128(acc);
        let s = _mm_add_ps(lo, hi);
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
        let mut sum = _mm_cvtss_f32(s);
        while i < n {
            sum += a[i] * b[i];
            i += 1;
        }
        sum
    }
}

/// Scales `v` to unit L2 norm; `None` if its norm is zero or not finite.
pub(crate) fn normalized(v: &[f32]) -> Option<Vec<f32>> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if !norm.is_finite() || norm == 0.0 {
        return None;
    }
    Some(v.iter().map(|x| x / norm).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernels_agree() {
        for n in [0, 1, 7, 8, 15, 16, 17, 384, 1000] {
            let a: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin()).collect();
            let b: Vec<f32> = (0..n).map(|i| (i as f32 * 0.11).cos()).collect();
            let want: f64 = a.iter().zip(&b).map(|(x, y)| *x as f64 * *y as f64).sum();
            assert!((dot(&a, &b) as f64 - want).abs() < 1e-3, "n={n}");
            assert!((dot_portable(&a, &b) as f64 - want).abs() < 1e-3, "n={n}");
        }
    }

    #[test]
    fn normalizes_or_refuses() {
        let v = normalized(&[3.0, 4.0]).unwrap();
        assert!((v[0] - 0.6).abs() < 1e-6 && (v[1] - 0.8).abs() < 1e-6);
        assert!(normalized(&[0.0, 0.0]).is_none());
        assert!(normalized(&[f32::NAN, 1.0]).is_none());
    }
}
