// What a context keeps between calls: the buffers its backend grows on demand (the FFN's scratch, the GEMM
// workspaces, the sparse GEMM's temporaries) and the rule that releases them (sparse24.h,
// s24_context_set_scratch_retention). Header-only: the CPU backend's unit test links cpu_backend.cpp alone.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <utility>
#include <vector>

namespace s24 {

constexpr size_t kDefaultRetainBytes = size_t(256) << 20;  // s24_context_memory.retain_max_bytes of a new context
constexpr int64_t kDefaultRetainCalls = 64;                 // ... and retain_calls

// One buffer a backend keeps between calls and grows on demand. Its owner calls asked() on every request with
// the size that request allocates (so that it compares with held()).
class RetainedBuffer {
public:
    RetainedBuffer() = default;
    RetainedBuffer(const RetainedBuffer&) = delete;
    RetainedBuffer& operator=(const RetainedBuffer&) = delete;
    virtual ~RetainedBuffer() = default;

    virtual size_t held() const = 0;  // bytes allocated now
    virtual void free_now() = 0;      // frees them; the work that used them has finished (Backend::quiesce)

    void asked(size_t bytes) {
        if (bytes > asked_) asked_ = bytes;
    }

private:
    friend class Retention;
    size_t asked_ = 0;  // the largest request of the call in progress
    // (call number, largest request) of the calls in the window that asked for this buffer, the sizes
    // strictly decreasing from the front: the front is the largest request in the window.
    std::deque<std::pair<int64_t, size_t>> peaks_;
};

// The retention rule over one backend's buffers. A call counts when it asked for any of them. After a counted
// call, when the buffers hold more than max_bytes together, each one larger than its largest request in the
// last `calls` counted calls (this one included; calls = 0: none) is released. So after a call the buffers hold
// at most max(max_bytes, the sum of what the last `calls` calls asked of each).
class Retention {
public:
    // scratch: the FFN's scratch buffer (reported apart from the workspaces).
    void add(RetainedBuffer* buffer, bool scratch) { buffers_.push_back({buffer, scratch}); }

    size_t max_bytes() const { return max_bytes_; }
    int64_t calls() const { return calls_; }
    int64_t releases() const { return releases_; }

    // Bytes held now: every buffer (scratch = false), or the FFN's scratch only.
    size_t held(bool scratch_only = false) const {
        size_t sum = 0;
        for (const Entry& e : buffers_)
            if (!scratch_only || e.scratch) sum += e.buffer->held();
        return sum;
    }

    // A new rule (calls >= 0, checked by the caller); returns the buffers it releases now.
    std::vector<RetainedBuffer*> set_rule(size_t max_bytes, int64_t calls) {
        max_bytes_ = max_bytes;
        calls_ = calls;
        for (const Entry& e : buffers_) expire(*e.buffer);
        return excess();
    }

    // The end of a call: returns the buffers the rule releases (none unless the call asked for a buffer).
    std::vector<RetainedBuffer*> end_call() {
        bool counted = false;
        for (const Entry& e : buffers_) counted = counted || e.buffer->asked_ > 0;
        if (!counted) return {};
        ++call_;
        for (const Entry& e : buffers_) {
            RetainedBuffer& b = *e.buffer;
            if (b.asked_ > 0) {
                while (!b.peaks_.empty() && b.peaks_.back().second <= b.asked_) b.peaks_.pop_back();
                b.peaks_.emplace_back(call_, b.asked_);
                b.asked_ = 0;
            }
            expire(b);
        }
        return excess();
    }

    // Every buffer that holds memory (s24_context_trim).
    std::vector<RetainedBuffer*> all() const {
        std::vector<RetainedBuffer*> out;
        for (const Entry& e : buffers_)
            if (e.buffer->held() > 0) out.push_back(e.buffer);
        return out;
    }

    // Counts the buffers released (after Backend::quiesce freed them).
    void released(size_t count) { releases_ += (int64_t)count; }

private:
    struct Entry {
        RetainedBuffer* buffer;
        bool scratch;
    };

    // Drops the requests of calls that left the window (call_ - calls_ cannot overflow: call_ >= 0).
    void expire(RetainedBuffer& b) const {
        while (!b.peaks_.empty() && b.peaks_.front().first <= call_ - calls_) b.peaks_.pop_front();
    }

    // The buffers larger than the window asked of them, when more than max_bytes is held.
    std::vector<RetainedBuffer*> excess() const {
        std::vector<RetainedBuffer*> out;
        if (held() <= max_bytes_) return out;
        for (const Entry& e : buffers_) {
            const RetainedBuffer& b = *e.buffer;
            const size_t recent = b.peaks_.empty() ? 0 : b.peaks_.front().second;
            if (b.held() > recent) out.push_back(e.buffer);
        }
        return out;
    }

    std::vector<Entry> buffers_;
    size_t max_bytes_ = kDefaultRetainBytes;
    int64_t calls_ = kDefaultRetainCalls;
    int64_t call_ = 0;       // counted calls so far
    int64_t releases_ = 0;   // buffers released so far (by the rule and by trim)
};

}  // namespace s24
