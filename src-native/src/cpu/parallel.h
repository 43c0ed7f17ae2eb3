// A minimal parallel loop for the CPU reference backend: [0, n) is cut into at most `threads`
// contiguous ranges, one std::thread each (the calling thread takes the first). Each output element is
// computed entirely by one range, so results do not depend on the thread count.
#pragma once

#include <algorithm>
#include <cstdint>
#include <exception>
#include <new>
#include <system_error>
#include <thread>
#include <vector>

namespace s24 {
namespace cpu {

// Threads the backend uses: the hardware's, capped.
inline int default_threads() {
    const unsigned hw = std::thread::hardware_concurrency();
    return (int)std::min(16U, std::max(1U, hw));
}

// Calls body(begin, end) on ranges covering [0, n). Range boundaries are multiples of `align` (except
// n). `work_per_item` (rough operations per item) keeps small loops on the calling thread. The first
// exception thrown by a body is rethrown after all ranges have finished.
template <class Body>
void parallel_for(int64_t n, int64_t align, double work_per_item, int max_threads, const Body& body) {
    if (n <= 0) return;
    const double min_work_per_thread = 1 << 16;
    const int64_t blocks = (n + align - 1) / align;
    int64_t threads = std::min<int64_t>(max_threads, blocks);
    threads = std::min<int64_t>(threads, (int64_t)((double)n * work_per_item / min_work_per_thread));
    if (threads <= 1) {
        body((int64_t)0, n);
        return;
    }
    const int64_t chunk = (blocks + threads - 1) / threads * align;
    const int64_t ranges = (n + chunk - 1) / chunk;
    std::vector<std::exception_ptr> errors;
    std::vector<std::thread> pool;
    std::vector<int64_t> inline_ranges;  // ranges whose thread could not be started
    try {
        errors.resize((size_t)ranges);
        pool.reserve((size_t)ranges);
        inline_ranges.reserve((size_t)ranges);
    } catch (const std::bad_alloc&) {
        body((int64_t)0, n);  // no memory for the bookkeeping: run serially
        return;
    }
    auto run = [&](int64_t i) {
        try {
            body(i * chunk, std::min(n, (i + 1) * chunk));
        } catch (...) {
            errors[(size_t)i] = std::current_exception();
        }
    };
    for (int64_t i = 1; i < ranges; ++i) {
        try {
            pool.emplace_back(run, i);
        } catch (const std::system_error&) {
            inline_ranges.push_back(i);
        }
    }
    run(0);
    for (int64_t i : inline_ranges) run(i);
    for (std::thread& t : pool) t.join();
    for (const std::exception_ptr& e : errors)
        if (e) std::rethrow_exception(e);
}

}  // namespace cpu
}  // namespace s24
