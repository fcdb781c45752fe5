//! Output buffers filled in parallel: zeroed chunk by chunk by the thread
//! that fills it ([`filled`], for outputs that are added into), or written
//! whole and never zeroed ([`written`]).
//!
//! `vec![0f32; n]` zeroes the whole buffer on the calling thread before the
//! parallel work starts (glibc hands back reused heap memory, which it must
//! clear): in a training step of the small CNN those serial passes were
//! about 6% of the time, with the other core idle. Zeroed chunk by chunk in
//! the workers, the same bytes are written while the chunk is in the cache
//! and both cores share the work. Where every element is written anyway
//! (a matrix product's output, batch norm's), the zeroes were a pass over
//! memory for nothing: about 5% of a training step of Table 2's row 1.

use std::mem::MaybeUninit;

use rayon::prelude::*;

/// A vector of `n` values made in chunks of `chunk` (the last may be
/// shorter), in parallel: each chunk is zeroed, then `f(state, index,
/// chunk)` fills it, with a `state` from `init` per worker (as rayon's
/// `for_each_init`).
pub(crate) fn filled<S>(
    n: usize,
    chunk: usize,
    init: impl Fn() -> S + Sync + Send,
    f: impl Fn(&mut S, usize, &mut [f32]) + Sync + Send,
) -> Vec<f32> {
    let mut v: Vec<f32> = Vec::with_capacity(n);
    v.spare_capacity_mut()[..n].par_chunks_mut(chunk.max(1)).enumerate().for_each_init(init, |state, (i, c)| {
        c.iter_mut().for_each(|x| {
            x.write(0.0);
        });
        // SAFETY: every element of `c` was initialised just above, and
        // MaybeUninit<f32> has the layout of f32.
        let c = unsafe { std::slice::from_raw_parts_mut(c.as_mut_ptr().cast::<f32>(), c.len()) };
        f(state, i, c);
    });
    // SAFETY: the chunks cover the first `n` elements, and each was
    // initialised (a panic in `f` propagates before this line).
    unsafe { v.set_len(n) };
    v
}

/// A vector of `n` values made in chunks of `chunk` (the last may be
/// shorter), in parallel: `f(state, index, chunk)` writes every element of
/// its chunk, which starts uninitialised (the compiler stops `f` from
/// reading it), with a `state` from `init` per worker.
///
/// # Safety
/// `f` must write every element of the chunk it is given (on return
/// without a panic); the vector's values are read afterwards.
pub(crate) unsafe fn written<S>(
    n: usize,
    chunk: usize,
    init: impl Fn() -> S + Sync + Send,
    f: impl Fn(&mut S, usize, &mut [MaybeUninit<f32>]) + Sync + Send,
) -> Vec<f32> {
    let mut v: Vec<f32> = Vec::with_capacity(n);
    v.spare_capacity_mut()[..n].par_chunks_mut(chunk.max(1)).enumerate().for_each_init(init, |state, (i, c)| f(state, i, c));
    // SAFETY: the chunks cover the first `n` elements and the caller
    // guarantees `f` wrote each (a panic in `f` propagates before this line).
    unsafe { v.set_len(n) };
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_chunk_is_zeroed_then_filled_in_place() {
        // A last chunk shorter than the others; `f` leaves some values alone.
        let v = filled(
            10,
            4,
            || 0usize,
            |calls, i, c| {
                *calls += 1;
                c[0] = i as f32 + 1.0;
            },
        );
        assert_eq!(v, [1.0, 0.0, 0.0, 0.0, 2.0, 0.0, 0.0, 0.0, 3.0, 0.0]);
        assert!(filled(0, 4, || (), |_, _, _| unreachable!()).is_empty());
    }

    #[test]
    fn written_chunks_hold_what_each_call_wrote() {
        // SAFETY: the closure writes every element of its chunk.
        let v = unsafe {
            written(
                10,
                4,
                || (),
                |_, i, c| {
                    for (j, x) in c.iter_mut().enumerate() {
                        x.write((10 * i + j) as f32);
                    }
                },
            )
        };
        assert_eq!(v, [0.0, 1.0, 2.0, 3.0, 10.0, 11.0, 12.0, 13.0, 20.0, 21.0]);
    }
}
