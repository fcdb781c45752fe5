//! Output buffers filled in parallel: zeroed chunk by chunk by the thread
//! that fills it ([`filled`], for outputs that are added into), or written
//! whole and never zeroed ([`written`]); and work buffers kept per thread
//! ([`with_scratch`]).
//!
//! `vec![0f32; n]` zeroes the whole buffer on the calling thread before the
//! parallel work starts (glibc hands back reused heap memory, which it must
//! clear): in a training step of the small CNN those serial passes were
//! about 6% of the time, with the other core idle. Zeroed chunk by chunk in
//! the workers, the same bytes are written while the chunk is in the cache
//! and both cores share the work. Where every element is written anyway
//! (a matrix product's output, batch norm's), the zeroes were a pass over
//! memory for nothing: about 5% of a training step of Table 2's row 1.

use std::cell::RefCell;
use std::mem::MaybeUninit;

use rayon::prelude::*;

/// A vector of `n` values made in chunks of `chunk` (the last may be
/// shorter), in parallel: each chunk is zeroed, then `f(index, chunk)`
/// fills it (work buffers: [`with_scratch`]).
pub(crate) fn filled(n: usize, chunk: usize, f: impl Fn(usize, &mut [f32]) + Sync + Send) -> Vec<f32> {
    let mut v: Vec<f32> = Vec::with_capacity(n);
    v.spare_capacity_mut()[..n].par_chunks_mut(chunk.max(1)).enumerate().for_each(|(i, c)| {
        c.iter_mut().for_each(|x| {
            x.write(0.0);
        });
        // SAFETY: every element of `c` was initialised just above, and
        // MaybeUninit<f32> has the layout of f32.
        let c = unsafe { std::slice::from_raw_parts_mut(c.as_mut_ptr().cast::<f32>(), c.len()) };
        f(i, c);
    });
    // SAFETY: the chunks cover the first `n` elements, and each was
    // initialised (a panic in `f` propagates before this line).
    unsafe { v.set_len(n) };
    v
}

/// A vector of `n` values made in chunks of `chunk` (the last may be
/// shorter), in parallel: `f(index, chunk)` writes every element of its
/// chunk, which starts uninitialised (the compiler stops `f` from reading
/// it).
///
/// # Safety
/// `f` must write every element of the chunk it is given (on return
/// without a panic); the vector's values are read afterwards.
pub(crate) unsafe fn written(n: usize, chunk: usize, f: impl Fn(usize, &mut [MaybeUninit<f32>]) + Sync + Send) -> Vec<f32> {
    let mut v: Vec<f32> = Vec::with_capacity(n);
    v.spare_capacity_mut()[..n].par_chunks_mut(chunk.max(1)).enumerate().for_each(|(i, c)| f(i, c));
    // SAFETY: the chunks cover the first `n` elements and the caller
    // guarantees `f` wrote each (a panic in `f` propagates before this line).
    unsafe { v.set_len(n) };
    v
}

thread_local! {
    /// The two scratch buffers of [`with_scratch`] on this thread.
    static SCRATCH: RefCell<[Vec<f32>; 2]> = const { RefCell::new([Vec::new(), Vec::new()]) };
}

/// `f(a, b)` with two buffers of `na` and `nb` values that this thread
/// keeps from call to call (grown when needed, never shrunk), so that a
/// kernel's per-image work buffers are neither allocated nor zeroed per
/// call: their values are left over from earlier calls, and `f` must write
/// every value it reads. (A rayon `for_each_init` state was made per job
/// split: for ResNet-34 at 224 px, several zeroed 7 MB window matrices per
/// convolution, 6% of the samples in `memset`.) A nested call on the same
/// thread gets fresh zeroed buffers.
pub(crate) fn with_scratch<R>(na: usize, nb: usize, f: impl FnOnce(&mut [f32], &mut [f32]) -> R) -> R {
    SCRATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut bufs) => {
            let [a, b] = &mut *bufs;
            for (buf, n) in [(&mut *a, na), (&mut *b, nb)] {
                if buf.len() < n {
                    buf.resize(n, 0.0);
                }
            }
            f(&mut a[..na], &mut b[..nb])
        }
        Err(_) => f(&mut vec![0.0; na], &mut vec![0.0; nb]),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_chunk_is_zeroed_then_filled_in_place() {
        // A last chunk shorter than the others; `f` leaves some values alone.
        let v = filled(10, 4, |i, c| c[0] = i as f32 + 1.0);
        assert_eq!(v, [1.0, 0.0, 0.0, 0.0, 2.0, 0.0, 0.0, 0.0, 3.0, 0.0]);
        assert!(filled(0, 4, |_, _| unreachable!()).is_empty());
    }

    #[test]
    fn scratch_buffers_are_kept_per_thread_and_nested_calls_get_their_own() {
        let first = with_scratch(3, 2, |a, b| {
            a.copy_from_slice(&[1.0, 2.0, 3.0]);
            b.fill(7.0);
            // Nested: fresh zeroed buffers, the outer ones untouched.
            with_scratch(2, 1, |x, y| assert_eq!((&*x, &*y), (&[0.0, 0.0][..], &[0.0][..])));
            a.as_ptr()
        });
        // The same buffer again, values left over, at the length asked for.
        with_scratch(2, 4, |a, b| {
            assert_eq!((a.as_ptr(), &*a), (first, &[1.0, 2.0][..]));
            assert_eq!(&b[..2], &[7.0, 7.0]);
            assert_eq!(b.len(), 4);
        });
    }

    #[test]
    fn written_chunks_hold_what_each_call_wrote() {
        // SAFETY: the closure writes every element of its chunk.
        let v = unsafe {
            written(10, 4, |i, c| {
                for (j, x) in c.iter_mut().enumerate() {
                    x.write((10 * i + j) as f32);
                }
            })
        };
        assert_eq!(v, [0.0, 1.0, 2.0, 3.0, 10.0, 11.0, 12.0, 13.0, 20.0, 21.0]);
    }
}
