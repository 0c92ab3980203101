//! The queue under `track()`: an unbounded lock-free segmented queue (a linked list of blocks of
//! 127 slots) whose drained blocks are kept for reuse instead of freed.
//!
//! A trimmed copy of `crossbeam_queue::SegQueue` (crossbeam-queue 0.3.14,
//! <https://github.com/crossbeam-rs/crossbeam>, Copyright (c) 2019 The Crossbeam Project
//! Developers, licensed MIT OR Apache-2.0) with three changes, all about the block allocation that
//! the pushing thread (a `track()` caller) pays for:
//! - Reuse. The thread that would free a drained block (usually the worker) resets it and parks
//!   it in one of `SPARES` slots; the next push that needs a block takes it from there.
//! - No zeroing. Crossbeam `calloc`s each block; here only `next` and the state words get an
//!   initial value, not the whole block (~57 KB for an `Item`).
//! - Larger blocks: 127 slots instead of 31. A block allocation on the `track()` thread goes to
//!   the glibc arena that the worker is freeing delivered events into, so it consolidates their
//!   chunks, faults in fresh pages, and, when the worker waits for the arena lock, wakes it (a
//!   futex call); in profiles of the interleaved bench with 31-slot blocks that was 6% to 18% of
//!   `track()`'s CPU time. A quarter as many allocations cost a quarter as much per event.
//!
//! Everything else (indices, slot states, the destroy protocol, `len`) is crossbeam's; the parts
//! this crate does not use (`push_mut`, `pop_mut`, `IntoIterator`) are left out.
#![allow(unsafe_code)]

use std::alloc::{alloc, handle_alloc_error, Layout};
use std::cell::UnsafeCell;
use std::marker::PhantomData;
use std::mem::MaybeUninit;
use std::ptr;
use std::sync::atomic::{self, AtomicPtr, AtomicUsize, Ordering};

use crossbeam_utils::{Backoff, CachePadded};

// 64-bit indices where the platform has them, as crossbeam does: a 32-bit index would wrap after
// 2^31 pushes.
#[cfg(target_has_atomic = "64")]
type AtomicIndex = std::sync::atomic::AtomicU64;
#[cfg(target_has_atomic = "64")]
type Index = u64;
#[cfg(not(target_has_atomic = "64"))]
type AtomicIndex = std::sync::atomic::AtomicUsize;
#[cfg(not(target_has_atomic = "64"))]
type Index = usize;

// Slot state bits: a value was written (`WRITE`), it was read (`READ`), the block is being
// retired and the reader of this slot must finish that (`DESTROY`).
const WRITE: usize = 1;
const READ: usize = 2;
const DESTROY: usize = 4;

// Each block covers one "lap" of indices (a power of two); the last index of a lap marks the
// switch to the next block, so a block holds one value fewer.
const LAP: Index = 128;
const BLOCK_CAP: usize = LAP as usize - 1;
// Low index bits reserved for metadata.
const SHIFT: usize = 1;
// In the head index: the head block is not the last one.
const HAS_NEXT: Index = 1;

/// Drained blocks kept for reuse, at most: fixed memory (`SPARES` blocks per queue, whatever the
/// queue holds; never more blocks than the queue once held at a time) in exchange for no
/// allocation on the push path while the consumer keeps up.
const SPARES: usize = 2;

struct Slot<T> {
    value: UnsafeCell<MaybeUninit<T>>,
    state: AtomicUsize,
}

impl<T> Slot<T> {
    /// Wait until a value is written into the slot.
    fn wait_write(&self) {
        let backoff = Backoff::new();
        while self.state.load(Ordering::Acquire) & WRITE == 0 {
            backoff.snooze();
        }
    }
}

/// A block in the linked list: up to `BLOCK_CAP` values.
struct Block<T> {
    next: AtomicPtr<Block<T>>,
    slots: [Slot<T>; BLOCK_CAP],
}

impl<T> Block<T> {
    const LAYOUT: Layout = Layout::new::<Self>();

    /// A new empty block: `next` null and every slot state 0. The values stay uninitialized
    /// (they are `MaybeUninit`), so unlike crossbeam the block is not zeroed as a whole.
    fn alloc() -> *mut Self {
        // SAFETY: the layout is not zero-sized (the block holds an `AtomicPtr`).
        let raw = unsafe { alloc(Self::LAYOUT) }.cast::<Self>();
        if raw.is_null() {
            handle_alloc_error(Self::LAYOUT)
        }
        // SAFETY: `raw` is a fresh allocation for a `Block<T>`; the fields written here are the
        // only ones with a validity requirement (atomics must hold a value; `MaybeUninit` need
        // not), and they are written through raw pointers, before any reference to the block.
        unsafe {
            ptr::addr_of_mut!((*raw).next).write(AtomicPtr::new(ptr::null_mut()));
            let slots = ptr::addr_of_mut!((*raw).slots).cast::<Slot<T>>();
            for i in 0..BLOCK_CAP {
                ptr::addr_of_mut!((*slots.add(i)).state).write(AtomicUsize::new(0));
            }
        }
        raw
    }

    /// Free a block allocated by `alloc`. The caller owns it and has read out its values.
    unsafe fn free(this: *mut Self) {
        // SAFETY: allocated by `alloc` with this layout; `Block` has no drop glue beyond its
        // atomics and `MaybeUninit` values (which are not dropped).
        unsafe { std::alloc::dealloc(this.cast(), Self::LAYOUT) }
    }

    /// Wait until the next pointer is set.
    fn wait_next(&self) -> *mut Block<T> {
        let backoff = Backoff::new();
        loop {
            let next = self.next.load(Ordering::Acquire);
            if !next.is_null() {
                return next;
            }
            backoff.snooze();
        }
    }
}

/// A position in the queue: an index and the block it falls in.
struct Position<T> {
    index: AtomicIndex,
    block: AtomicPtr<Block<T>>,
}

/// An unbounded multi-producer multi-consumer queue (the worker pops; so does a `track()` that
/// evicts the oldest event under `drop_oldest`).
pub(crate) struct SegQueue<T> {
    head: CachePadded<Position<T>>,
    tail: CachePadded<Position<T>>,
    /// Drained blocks, reset, waiting to be reused (null: empty). Only swapped with null and
    /// compare-exchanged from null, so no ABA: a pointer taken out is owned by the taker.
    spares: CachePadded<[AtomicPtr<Block<T>>; SPARES]>,
    /// Blocks allocated so far (the tests check that drained blocks are reused).
    #[cfg(test)]
    allocated: AtomicUsize,
    _marker: PhantomData<T>,
}

// SAFETY: as crossbeam's: values move between threads (so `T: Send`), never shared.
unsafe impl<T: Send> Send for SegQueue<T> {}
// SAFETY: as above; all shared state is atomics, and a slot's value is accessed by the one thread
// that claimed its index.
unsafe impl<T: Send> Sync for SegQueue<T> {}

impl<T> SegQueue<T> {
    pub(crate) fn new() -> Self {
        SegQueue {
            head: CachePadded::new(Position {
                block: AtomicPtr::new(ptr::null_mut()),
                index: AtomicIndex::new(0),
            }),
            tail: CachePadded::new(Position {
                block: AtomicPtr::new(ptr::null_mut()),
                index: AtomicIndex::new(0),
            }),
            spares: CachePadded::new([const { AtomicPtr::new(ptr::null_mut()) }; SPARES]),
            #[cfg(test)]
            allocated: AtomicUsize::new(0),
            _marker: PhantomData,
        }
    }

    /// A block ready to be installed: a parked spare if there is one, else a new allocation.
    fn take_block(&self) -> *mut Block<T> {
        for spare in self.spares.iter() {
            // A plain load first: an empty slot costs no read-modify-write.
            if !spare.load(Ordering::Relaxed).is_null() {
                // Acquire pairs with the Release in `park`: the reset happened before.
                let b = spare.swap(ptr::null_mut(), Ordering::Acquire);
                if !b.is_null() {
                    return b;
                }
            }
        }
        #[cfg(test)]
        self.allocated.fetch_add(1, Ordering::Relaxed);
        Block::alloc()
    }

    /// Keep a reset block for reuse, or free it when every spare slot is taken.
    ///
    /// # Safety
    /// The caller owns `block` exclusively, its values are read out, and it is reset (`next`
    /// null, every slot state 0).
    unsafe fn park(&self, block: *mut Block<T>) {
        for spare in self.spares.iter() {
            if spare.load(Ordering::Relaxed).is_null()
                && spare
                    .compare_exchange(ptr::null_mut(), block, Ordering::Release, Ordering::Relaxed)
                    .is_ok()
            {
                return;
            }
        }
        // SAFETY: owned by the caller, values read out.
        unsafe { Block::free(block) }
    }

    /// Reset a drained block and park it (or free it).
    ///
    /// # Safety
    /// The caller owns `block` exclusively and has read out every value in it.
    unsafe fn recycle(&self, block: *mut Block<T>) {
        // SAFETY: exclusive ownership (see `retire`), so a `&mut` is sound and plain writes are
        // enough: whoever takes the block from a spare slot synchronizes with `park`'s Release.
        let b = unsafe { &mut *block };
        *b.next.get_mut() = ptr::null_mut();
        for slot in b.slots.iter_mut() {
            *slot.state.get_mut() = 0;
        }
        // SAFETY: owned, drained, and now reset.
        unsafe { self.park(block) }
    }

    /// Crossbeam's `Block::destroy`, ending in `recycle` instead of a free: set `DESTROY` in the
    /// slots from `start` on whose readers are not done yet; the last of them finishes the job.
    ///
    /// Why the block is exclusively owned when this reaches `recycle` (the condition crossbeam
    /// relies on to free it, and all that reuse needs): every slot is READ, and each READ (or
    /// the DESTROY hand-off to a slot's reader) is observed with Acquire, so every access to the
    /// block's values and states happened before. Producers are done too: a producer's last
    /// access to a block is its slot's WRITE, which the reader waited for; the producer that
    /// installed the next block stored `next` before that. Any other thread still holding this
    /// block's address (a `push` or `pop` that loaded it with an index that has since moved on)
    /// does not dereference it: its compare-exchange on the index fails first, since indices
    /// only grow. That is the same situation as after crossbeam's free, when the allocator may
    /// hand the same address out again; a reused block is no different.
    ///
    /// # Safety
    /// `this` is a block of this queue whose slots before `start` are all read (the caller read
    /// the one at `start - 1`, or `start` is 0 and the caller read the last slot).
    unsafe fn retire(&self, this: *mut Block<T>, start: usize) {
        // The last slot needs no DESTROY bit: its reader is the one that started retiring.
        for i in start..BLOCK_CAP - 1 {
            // SAFETY: the block is alive until every slot is read.
            let slot = unsafe { (*this).slots.get_unchecked(i) };
            if slot.state.load(Ordering::Acquire) & READ == 0
                && slot.state.fetch_or(DESTROY, Ordering::AcqRel) & READ == 0
            {
                // That slot's reader will go on retiring the block.
                return;
            }
        }
        // SAFETY: no thread uses the block any more (see above).
        unsafe { self.recycle(this) }
    }

    /// Push `value` at the tail.
    // Inlined, with the index claim out of line: the write into the slot then happens in the
    // caller, and the push path costs one call.
    #[inline]
    pub(crate) fn push(&self, value: T) {
        let slot = self.claim();
        // SAFETY: `claim` gave this thread the slot, unwritten, in a block that stays alive
        // until the slot is read, which cannot happen before WRITE is set.
        unsafe {
            (*slot).value.get().write(MaybeUninit::new(value));
            (*slot).state.fetch_or(WRITE, Ordering::Release);
        }
    }

    /// Claim the slot at the tail for a push (installing the next block when it is the block's
    /// last one); the caller writes the value and sets WRITE.
    fn claim(&self) -> *const Slot<T> {
        let backoff = Backoff::new();
        let mut tail = self.tail.index.load(Ordering::Acquire);
        let mut block = self.tail.block.load(Ordering::Acquire);
        let mut next_block: *mut Block<T> = ptr::null_mut();

        loop {
            let offset = ((tail >> SHIFT) % LAP) as usize;

            // At the end of a block: wait until the next one is installed.
            if offset == BLOCK_CAP {
                backoff.snooze();
                tail = self.tail.index.load(Ordering::Acquire);
                block = self.tail.block.load(Ordering::Acquire);
                continue;
            }

            // Whoever takes the last slot installs the next block: get it in advance, so the
            // others wait as briefly as possible.
            if offset + 1 == BLOCK_CAP && next_block.is_null() {
                next_block = self.take_block();
            }

            // The first push installs the first block.
            if block.is_null() {
                let new = self.take_block();
                if self
                    .tail
                    .block
                    .compare_exchange(block, new, Ordering::Release, Ordering::Relaxed)
                    .is_ok()
                {
                    self.head.block.store(new, Ordering::Release);
                    block = new;
                } else {
                    if next_block.is_null() {
                        next_block = new;
                    } else {
                        // SAFETY: `new` was never published; it is clean.
                        unsafe { self.park(new) };
                    }
                    tail = self.tail.index.load(Ordering::Acquire);
                    block = self.tail.block.load(Ordering::Acquire);
                    continue;
                }
            }

            let new_tail = tail + (1 << SHIFT);
            match self.tail.index.compare_exchange_weak(
                tail,
                new_tail,
                Ordering::SeqCst,
                Ordering::Acquire,
            ) {
                // SAFETY: the index is ours, so the slot is ours to write and `block` is alive
                // (it cannot be retired before this slot is read).
                Ok(_) => unsafe {
                    if offset + 1 == BLOCK_CAP {
                        let next_index = new_tail.wrapping_add(1 << SHIFT);
                        self.tail.block.store(next_block, Ordering::Release);
                        self.tail.index.store(next_index, Ordering::Release);
                        (*block).next.store(next_block, Ordering::Release);
                    } else if !next_block.is_null() {
                        // Another push installed the next block: this one goes back unused.
                        self.park(next_block);
                    }

                    return (*block).slots.get_unchecked(offset);
                },
                Err(t) => {
                    tail = t;
                    block = self.tail.block.load(Ordering::Acquire);
                    backoff.spin();
                }
            }
        }
    }

    /// Pop the value at the head; `None` when the queue is empty.
    pub(crate) fn pop(&self) -> Option<T> {
        let backoff = Backoff::new();
        let mut head = self.head.index.load(Ordering::Acquire);
        let mut block = self.head.block.load(Ordering::Acquire);

        loop {
            let offset = ((head >> SHIFT) % LAP) as usize;

            // At the end of a block: wait until the next one is installed.
            if offset == BLOCK_CAP {
                backoff.snooze();
                head = self.head.index.load(Ordering::Acquire);
                block = self.head.block.load(Ordering::Acquire);
                continue;
            }

            let mut new_head = head + (1 << SHIFT);

            if new_head & HAS_NEXT == 0 {
                atomic::fence(Ordering::SeqCst);
                let tail = self.tail.index.load(Ordering::Relaxed);

                // Head equals tail: empty.
                if head >> SHIFT == tail >> SHIFT {
                    return None;
                }

                // Head and tail in different blocks: set `HAS_NEXT` in the head.
                if (head >> SHIFT) / LAP != (tail >> SHIFT) / LAP {
                    new_head |= HAS_NEXT;
                }
            }

            // Null only while the first push is installing the first block.
            if block.is_null() {
                backoff.snooze();
                head = self.head.index.load(Ordering::Acquire);
                block = self.head.block.load(Ordering::Acquire);
                continue;
            }

            match self.head.index.compare_exchange_weak(
                head,
                new_head,
                Ordering::SeqCst,
                Ordering::Acquire,
            ) {
                // SAFETY: the index is ours: its slot was (or is being) written, and `block`
                // stays alive until that slot is read.
                Ok(_) => unsafe {
                    // Took the last slot: move the head to the next block.
                    if offset + 1 == BLOCK_CAP {
                        let next = (*block).wait_next();
                        let mut next_index = (new_head & !HAS_NEXT).wrapping_add(1 << SHIFT);
                        if !(*next).next.load(Ordering::Relaxed).is_null() {
                            next_index |= HAS_NEXT;
                        }
                        self.head.block.store(next, Ordering::Release);
                        self.head.index.store(next_index, Ordering::Release);
                    }

                    let slot = (*block).slots.get_unchecked(offset);
                    slot.wait_write();
                    let value = slot.value.get().read().assume_init();

                    // Retire the block after its last slot, or finish retiring it if another
                    // thread tried while this one was reading.
                    if offset + 1 == BLOCK_CAP {
                        self.retire(block, 0);
                    } else if slot.state.fetch_or(READ, Ordering::AcqRel) & DESTROY != 0 {
                        self.retire(block, offset + 1);
                    }
                    return Some(value);
                },
                Err(h) => {
                    head = h;
                    block = self.head.block.load(Ordering::Acquire);
                    backoff.spin();
                }
            }
        }
    }

    /// True when the queue holds no value.
    pub(crate) fn is_empty(&self) -> bool {
        let head = self.head.index.load(Ordering::SeqCst);
        let tail = self.tail.index.load(Ordering::SeqCst);
        head >> SHIFT == tail >> SHIFT
    }

    /// Values in the queue.
    pub(crate) fn len(&self) -> usize {
        loop {
            let mut tail = self.tail.index.load(Ordering::SeqCst);
            let mut head = self.head.index.load(Ordering::SeqCst);

            // The tail did not move meanwhile: the two indices are consistent.
            if self.tail.index.load(Ordering::SeqCst) == tail {
                tail &= !((1 << SHIFT) - 1);
                head &= !((1 << SHIFT) - 1);

                // An index on a block's end counts as the next block's start.
                if (tail >> SHIFT) & (LAP - 1) == LAP - 1 {
                    tail = tail.wrapping_add(1 << SHIFT);
                }
                if (head >> SHIFT) & (LAP - 1) == LAP - 1 {
                    head = head.wrapping_add(1 << SHIFT);
                }

                // Rotate both so that the head falls in the first block.
                let lap = (head >> SHIFT) / LAP;
                tail = tail.wrapping_sub((lap * LAP) << SHIFT);
                head = head.wrapping_sub((lap * LAP) << SHIFT);

                tail >>= SHIFT;
                head >>= SHIFT;

                // The difference minus the block ends in between.
                return (tail - head - tail / LAP) as usize;
            }
        }
    }

    /// Blocks parked for reuse right now.
    #[cfg(test)]
    fn spare_count(&self) -> usize {
        self.spares
            .iter()
            .filter(|s| !s.load(Ordering::Relaxed).is_null())
            .count()
    }
}

impl<T> Drop for SegQueue<T> {
    fn drop(&mut self) {
        let mut head = *self.head.index.get_mut();
        let mut tail = *self.tail.index.get_mut();
        let mut block = *self.head.block.get_mut();

        head &= !((1 << SHIFT) - 1);
        tail &= !((1 << SHIFT) - 1);

        // SAFETY: `&mut self`: no other thread uses the queue; the slots between head and tail
        // hold values, and every block was allocated by `Block::alloc`.
        unsafe {
            while head != tail {
                let offset = ((head >> SHIFT) % LAP) as usize;
                if offset < BLOCK_CAP {
                    let slot = (*block).slots.get_unchecked(offset);
                    (*slot.value.get()).assume_init_drop();
                } else {
                    let next = *(*block).next.get_mut();
                    Block::free(block);
                    block = next;
                }
                head = head.wrapping_add(1 << SHIFT);
            }
            if !block.is_null() {
                Block::free(block);
            }
            for spare in self.spares.iter_mut() {
                let b = *spare.get_mut();
                if !b.is_null() {
                    Block::free(b);
                }
            }
        }
    }
}

impl<T> std::fmt::Debug for SegQueue<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SegQueue")
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;

    #[test]
    fn fifo_and_len() {
        let q = SegQueue::new();
        assert!(q.is_empty());
        assert_eq!(q.pop(), None);
        for i in 0..100 {
            q.push(i);
            assert_eq!(q.len(), i + 1);
        }
        for i in 0..100 {
            assert_eq!(q.pop(), Some(i));
            assert_eq!(q.len(), 99 - i);
        }
        assert!(q.is_empty());
        assert_eq!(q.pop(), None);
    }

    #[test]
    fn drained_blocks_are_reused() {
        let q = SegQueue::new();
        // Push and drain 10 blocks' worth, one block at a time: after the first two blocks
        // (the one being drained and the next), every block comes from a spare slot.
        for round in 0..10 {
            for i in 0..BLOCK_CAP {
                q.push(round * BLOCK_CAP + i);
            }
            for i in 0..BLOCK_CAP {
                assert_eq!(q.pop(), Some(round * BLOCK_CAP + i));
            }
        }
        assert_eq!(q.allocated.load(Ordering::Relaxed), 2);
        assert_eq!(q.spare_count(), 1);

        // Filling far past the spares allocates; draining keeps at most `SPARES` blocks.
        for i in 0..BLOCK_CAP * 20 {
            q.push(i);
        }
        for i in 0..BLOCK_CAP * 20 {
            assert_eq!(q.pop(), Some(i));
        }
        assert_eq!(q.spare_count(), SPARES);
        assert!(q.is_empty());
    }

    #[test]
    fn reused_blocks_start_clean() {
        // Values of a type with drop glue, across many reuses: each is dropped exactly once,
        // whether popped or left in the queue when it is dropped.
        let live = Arc::new(AtomicUsize::new(0));
        struct Counted(Arc<AtomicUsize>, usize);
        impl Drop for Counted {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::Relaxed);
            }
        }
        let q = SegQueue::new();
        let mut next = 0;
        let mut expect = 0;
        for round in 0..50 {
            // An uneven amount each round, so block ends fall everywhere.
            for _ in 0..(round * 7) % 53 + 1 {
                live.fetch_add(1, Ordering::Relaxed);
                q.push(Counted(live.clone(), next));
                next += 1;
            }
            for _ in 0..(round * 5) % 47 {
                match q.pop() {
                    Some(c) => {
                        assert_eq!(c.1, expect);
                        expect += 1;
                    }
                    None => break,
                }
            }
        }
        assert_eq!(q.len(), next - expect);
        assert_eq!(live.load(Ordering::Relaxed), next - expect);
        drop(q);
        assert_eq!(live.load(Ordering::Relaxed), 0);
    }

    /// Several producers, one consumer (the worker) and one occasional second consumer (a
    /// `track()` evicting under `drop_oldest`): every value is seen exactly once, and each
    /// producer's values come out in its order.
    #[test]
    fn stress_many_producers_every_value_once() {
        const PRODUCERS: usize = 4;
        const PER: usize = if cfg!(miri) { 200 } else { 100_000 };
        let q = Arc::new(SegQueue::<usize>::new());
        let done = Arc::new(AtomicBool::new(false));
        let producers: Vec<_> = (0..PRODUCERS)
            .map(|p| {
                let q = q.clone();
                std::thread::spawn(move || {
                    for i in 0..PER {
                        q.push(p * PER + i);
                    }
                })
            })
            .collect();
        // Each consumer checks per-producer order and returns what it saw.
        let consume = |q: Arc<SegQueue<usize>>, done: Arc<AtomicBool>, every: usize| {
            std::thread::spawn(move || {
                let mut seen = Vec::new();
                let mut last = [None::<usize>; PRODUCERS];
                let mut n = 0usize;
                loop {
                    n += 1;
                    if every > 1 && !n.is_multiple_of(every) {
                        std::hint::spin_loop();
                        if done.load(Ordering::Acquire) && q.is_empty() {
                            break;
                        }
                        continue;
                    }
                    match q.pop() {
                        Some(v) => {
                            let p = v / PER;
                            assert!(last[p].is_none_or(|l| l < v), "producer {p} out of order");
                            last[p] = Some(v);
                            seen.push(v);
                        }
                        None if done.load(Ordering::Acquire) => break,
                        None => std::hint::spin_loop(),
                    }
                }
                seen
            })
        };
        let worker = consume(q.clone(), done.clone(), 1);
        let evictor = consume(q.clone(), done.clone(), 64);
        for p in producers {
            p.join().expect("producer panicked");
        }
        done.store(true, Ordering::Release);
        let mut all = worker.join().expect("consumer panicked");
        all.extend(evictor.join().expect("consumer panicked"));
        while let Some(v) = q.pop() {
            all.push(v);
        }
        all.sort_unstable();
        assert_eq!(all.len(), PRODUCERS * PER);
        assert!(
            all.iter().enumerate().all(|(i, &v)| i == v),
            "a value lost or seen twice"
        );
        assert!(q.is_empty());
        assert!(q.spare_count() <= SPARES);
    }

    /// Several consumers popping at full speed, so that blocks are retired while other readers
    /// are still in them (the DESTROY hand-off), with values that own heap memory: each value is
    /// seen once and dropped once.
    #[test]
    fn stress_many_consumers_every_value_once() {
        const THREADS: usize = 3;
        const PER: usize = if cfg!(miri) { 200 } else { 50_000 };
        let q = Arc::new(SegQueue::<Box<usize>>::new());
        let popped = Arc::new(AtomicUsize::new(0));
        let producers: Vec<_> = (0..THREADS)
            .map(|p| {
                let q = q.clone();
                std::thread::spawn(move || {
                    for i in 0..PER {
                        q.push(Box::new(p * PER + i));
                    }
                })
            })
            .collect();
        let consumers: Vec<_> = (0..THREADS)
            .map(|_| {
                let (q, popped) = (q.clone(), popped.clone());
                std::thread::spawn(move || {
                    let mut seen = Vec::new();
                    while popped.load(Ordering::Relaxed) < THREADS * PER {
                        if let Some(v) = q.pop() {
                            popped.fetch_add(1, Ordering::Relaxed);
                            seen.push(*v);
                        } else {
                            std::hint::spin_loop();
                        }
                    }
                    seen
                })
            })
            .collect();
        for p in producers {
            p.join().expect("producer panicked");
        }
        let mut all: Vec<usize> = consumers
            .into_iter()
            .flat_map(|c| c.join().expect("consumer panicked"))
            .collect();
        all.sort_unstable();
        assert_eq!(all.len(), THREADS * PER);
        assert!(
            all.iter().enumerate().all(|(i, &v)| i == v),
            "a value lost or seen twice"
        );
        assert!(q.is_empty());
    }
}
