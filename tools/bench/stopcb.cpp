// SPDX-License-Identifier: MIT
//
// The C++20 baseline: one std::stop_source with N std::stop_callbacks, as
// research/limits.md section 3 measures it.  The callbacks sit in one
// contiguous array (registration order = memory order) and each one
// increments a counter.
//
// libstdc++'s request_stop() releases a per-callback binary_semaphore after
// each callback unless __gnu_cxx::__is_single_threaded(): in a process that
// has ever started a thread that is one futex(FUTEX_WAKE) system call per
// callback.  The bench therefore runs these functions twice: in its own
// (multi-threaded) process, and in a helper process that never starts a
// thread (helper.c).

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <ctime>
#include <new>
#include <stop_token>
#include <vector>

namespace
{

std::size_t calls;

struct Inc {
	void operator()() noexcept
	{
		++calls;
	}
};

using Callback = std::stop_callback<Inc>;

std::int64_t now()
{
	timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return std::int64_t(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

// Raw storage for the callbacks, grown on demand and kept.
Callback *slots(std::size_t n)
{
	static void *mem;
	static std::size_t cap;

	if (n > cap) {
		std::free(mem);
		mem = std::aligned_alloc(
		    alignof(Callback), ((n * sizeof(Callback) + 63) / 64) * 64);
		if (!mem)
			std::abort();
		cap = n;
	}
	return static_cast<Callback *>(mem);
}

} // namespace

#define STR2(x) #x
#define STR(x) STR2(x)

extern "C" {

bool cxx_available(void)
{
	return true;
}

const char *cxx_compiler(void)
{
#if defined(__clang__)
	return "clang++ " __clang_version__ ", libstdc++ " STR(__GLIBCXX__);
#else
	return "g++ " __VERSION__ ", libstdc++ " STR(__GLIBCXX__);
#endif
}

// ns per callback of request_stop() over `trees` sources with n callbacks
// each (only the request_stop() calls are timed).
double cxx_fanout(std::size_t n, std::size_t trees)
{
	std::vector<std::stop_source> src(trees);
	Callback *cb = slots(n * trees);
	std::int64_t t0, t1;

	calls = 0;
	for (std::size_t t = 0; t < trees; t++) {
		std::stop_token tok = src[t].get_token();

		for (std::size_t i = 0; i < n; i++)
			new (&cb[t * n + i]) Callback(tok, Inc{});
	}
	t0 = now();
	for (std::size_t t = 0; t < trees; t++)
		src[t].request_stop();
	t1 = now();
	if (calls != n * trees)
		std::abort();
	for (std::size_t k = 0; k < n * trees; k++)
		cb[k].~Callback();
	return double(t1 - t0) / double(n * trees);
}

// ns per std::stop_callback register + deregister: k registered on one
// source, then k deregistered, all timed.
double cxx_life(std::size_t k)
{
	std::stop_source src;
	std::stop_token tok = src.get_token();
	Callback *cb = slots(k);
	std::int64_t t0, t1;

	t0 = now();
	for (std::size_t i = 0; i < k; i++)
		new (&cb[i]) Callback(tok, Inc{});
	for (std::size_t i = 0; i < k; i++)
		cb[i].~Callback();
	t1 = now();
	return double(t1 - t0) / double(k);
}

} // extern "C"
