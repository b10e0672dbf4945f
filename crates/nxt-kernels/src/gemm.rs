//! Matrix products on CPU slices that accumulate into a buffer the caller owns, with the
//! `gemm` crate candle's own CPU matmul runs on (same version, same threads).
//!
//! A fused op written with tensor ops pays for every intermediate: `x·Wᵀ + s·(x·Aᵀ)·Bᵀ`
//! composed allocates the product, the low-rank product, its scaled copy and the sum, each
//! as large as the output, then copies the result out of the op. [`matmul_into`] writes
//! `dst = [dst +] scale·lhs·rhs` in place, reading operands through their strides (a
//! transposed weight is a view, not a copy), so such an op allocates its output once.

use candle_core::{Layout, Result};

/// The element types [`matmul_into`] has kernels for.
pub trait GemmFloat: Copy + Send + Sync + 'static + sealed::Sealed {
    /// Additive identity.
    const ZERO: Self;
    /// Multiplicative identity.
    const ONE: Self;
}

impl GemmFloat for f32 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
}

impl GemmFloat for f64 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for f64 {}
}

/// A read-only strided view of a matrix: element `(i, j)` is `data[i·row_stride +
/// j·col_stride]`, every such index checked to lie inside `data` when the view is made.
#[derive(Debug, Clone, Copy)]
pub struct MatRef<'a, T> {
    data: &'a [T],
    rows: usize,
    cols: usize,
    row_stride: usize,
    col_stride: usize,
}

impl<'a, T> MatRef<'a, T> {
    /// A view of `data`; fails when an element of the view would fall outside it.
    pub fn new(
        data: &'a [T],
        rows: usize,
        cols: usize,
        row_stride: usize,
        col_stride: usize,
    ) -> Result<Self> {
        if rows > 0 && cols > 0 {
            let last = (rows - 1)
                .checked_mul(row_stride)
                .and_then(|r| (cols - 1).checked_mul(col_stride).map(|c| (r, c)))
                .and_then(|(r, c)| r.checked_add(c));
            match last {
                Some(last) if last < data.len() => {}
                _ => candle_core::bail!(
                    "matrix view ({rows}, {cols}) with strides ({row_stride}, {col_stride}) \
                     does not fit a buffer of {} elements",
                    data.len()
                ),
            }
        }
        Ok(Self {
            data,
            rows,
            cols,
            row_stride,
            col_stride,
        })
    }

    /// The row-major contiguous `(rows, cols)` matrix held in `data`.
    pub fn row_major(data: &'a [T], rows: usize, cols: usize) -> Result<Self> {
        if data.len() != rows * cols {
            candle_core::bail!(
                "a ({rows}, {cols}) matrix needs {} elements, got {}",
                rows * cols,
                data.len()
            );
        }
        Self::new(data, rows, cols, cols, 1)
    }

    /// The 2-D tensor laid out by `layout` in a storage slice (`data` is the whole storage;
    /// the layout's start offset is applied here).
    pub fn from_layout(data: &'a [T], layout: &Layout) -> Result<Self> {
        let (&[rows, cols], &[rs, cs]) = (layout.dims(), layout.stride()) else {
            candle_core::bail!(
                "expected a matrix, got a tensor of shape {:?}",
                layout.dims()
            );
        };
        let Some(data) = data.get(layout.start_offset()..) else {
            candle_core::bail!(
                "layout starts at {} in a buffer of {}",
                layout.start_offset(),
                data.len()
            );
        };
        Self::new(data, rows, cols, rs, cs)
    }

    /// The transpose, as a view of the same elements.
    pub fn t(self) -> Self {
        Self {
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
            ..self
        }
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Number of columns.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Element `(i, j)` (within the view's shape).
    pub fn at(&self, i: usize, j: usize) -> T
    where
        T: Copy,
    {
        self.data[i * self.row_stride + j * self.col_stride]
    }
}

/// The threads a product runs on: the same number as candle's matmul, on rayon's pool.
fn parallelism() -> gemm::Parallelism {
    match candle_core::utils::get_num_threads() {
        n if n > 1 => gemm::Parallelism::Rayon(n),
        _ => gemm::Parallelism::None,
    }
}

/// `dst = scale·lhs·rhs` (`accumulate == false`) or `dst += scale·lhs·rhs`, where `dst` is the
/// row-major `(lhs.rows, rhs.cols)` matrix. Fails when the shapes do not agree; never reads
/// `dst` when not accumulating.
pub fn matmul_into<T: GemmFloat>(
    dst: &mut [T],
    lhs: MatRef<'_, T>,
    rhs: MatRef<'_, T>,
    scale: T,
    accumulate: bool,
) -> Result<()> {
    let (m, k, n) = (lhs.rows, lhs.cols, rhs.cols);
    if rhs.rows != k {
        candle_core::bail!(
            "matmul of ({m}, {k}) by ({}, {n}): inner dimensions differ",
            rhs.rows
        );
    }
    if dst.len() != m * n {
        candle_core::bail!(
            "matmul into {} elements, the ({m}, {n}) product needs {}",
            dst.len(),
            m * n
        );
    }
    if m == 0 || n == 0 {
        return Ok(());
    }
    if k == 0 {
        if !accumulate {
            dst.fill(T::ZERO);
        }
        return Ok(());
    }
    // SAFETY: `MatRef::new` checked that every `(i, j)` of both operands (i < rows,
    // j < cols) indexes inside its slice, `dst` holds exactly `m·n` elements written
    // row-major (strides `(n, 1)`), and `T` is `f32` or `f64` (sealed), which `gemm`
    // supports. The operands are shared borrows and `dst` an exclusive one, so they do not
    // alias.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            lhs.data.as_ptr(),
            lhs.col_stride as isize,
            lhs.row_stride as isize,
            rhs.data.as_ptr(),
            rhs.col_stride as isize,
            rhs.row_stride as isize,
            T::ONE,
            scale,
            false,
            false,
            false,
            parallelism(),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(lhs: MatRef<'_, f64>, rhs: MatRef<'_, f64>) -> Vec<f64> {
        let mut out = vec![0.0; lhs.rows() * rhs.cols()];
        for i in 0..lhs.rows() {
            for j in 0..rhs.cols() {
                out[i * rhs.cols() + j] =
                    (0..lhs.cols()).map(|p| lhs.at(i, p) * rhs.at(p, j)).sum();
            }
        }
        out
    }

    fn values(n: usize, seed: u64) -> Vec<f64> {
        (0..n)
            .map(|i| (((i as u64 * 2654435761 + seed * 97) % 1000) as f64) / 250.0 - 2.0)
            .collect()
    }

    #[test]
    fn strided_operands_match_the_naive_product() {
        let (m, k, n) = (7, 5, 6);
        let a = values(m * k, 1);
        let w = values(n * k, 2);
        // lhs row-major; rhs the transpose of a row-major (n, k) weight.
        let lhs = MatRef::row_major(&a, m, k).unwrap();
        let rhs = MatRef::row_major(&w, n, k).unwrap().t();
        let mut dst = vec![f64::NAN; m * n];
        matmul_into(&mut dst, lhs, rhs, 1.0, false).unwrap();
        let want = naive(lhs, rhs);
        assert!(dst.iter().zip(&want).all(|(x, y)| (x - y).abs() < 1e-12));

        // Accumulating a scaled second product onto the first.
        matmul_into(&mut dst, lhs, rhs, -2.0, true).unwrap();
        assert!(dst.iter().zip(&want).all(|(x, y)| (x + y).abs() < 1e-12));
    }

    #[test]
    fn mismatched_shapes_and_short_buffers_are_refused() {
        let a = values(12, 3);
        assert!(MatRef::new(&a, 4, 4, 4, 1).is_err());
        assert!(MatRef::row_major(&a, 5, 2).is_err());
        let lhs = MatRef::row_major(&a, 3, 4).unwrap();
        let mut dst = vec![0.0; 9];
        assert!(matmul_into(&mut dst, lhs, lhs, 1.0, false).is_err());
        let mut short = vec![0.0; 8];
        assert!(matmul_into(&mut short, lhs, lhs.t(), 1.0, false).is_err());
    }

    #[test]
    fn an_empty_inner_dimension_gives_zeros() {
        let empty: [f64; 0] = [];
        let lhs = MatRef::new(&empty, 2, 0, 0, 1).unwrap();
        let rhs = MatRef::new(&empty, 0, 3, 3, 1).unwrap();
        let mut dst = vec![5.0; 6];
        matmul_into(&mut dst, lhs, rhs, 1.0, true).unwrap();
        assert_eq!(dst, vec![5.0; 6]);
        matmul_into(&mut dst, lhs, rhs, 1.0, false).unwrap();
        assert_eq!(dst, vec![0.0; 6]);
    }
}
