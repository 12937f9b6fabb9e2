//! Cache hints for state that is cold when it is next touched.

/// Asks the CPU for every cache line of `items` at once. A series' window state is cold when its
/// next point comes (hundreds of thousands of series), and walking its fields one by one waits
/// for each line in turn; asked for together, the lines arrive in parallel.
pub fn prefetch<T>(items: &[T]) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        let start = items.as_ptr().cast::<i8>();
        for offset in (0..size_of_val(items)).step_by(64) {
            // SAFETY: a prefetch is a hint: it reads nothing and cannot fault, and the address
            // stays inside `items`.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(start.add(offset)) };
        }
    }
}
