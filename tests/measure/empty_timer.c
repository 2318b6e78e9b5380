/* A CPU timer with an empty handler, preloaded: what any in-process sampling profiler pays for
 * the timer itself (the interrupt, the signal's delivery and return, what they evict), before it
 * does any work. The same timers as the agent's (main thread only: the workloads of
 * alloc_overhead.py are single-threaded): with EMPTY_TIMER_CLOCK=thread, a POSIX timer on the
 * thread's CPU clock (`timer_create`, SIGEV_THREAD_ID; tick-driven: what the agent uses up to
 * 250 Hz); otherwise a perf `cpu-clock` event, user time only, whose overflow raises SIGPROF on
 * the thread (what it uses above). EMPTY_TIMER_HZ sets the rate; unset: nothing is armed.
 * Built and used by tests/measure/alloc_overhead.py (configurations empty-*). */
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/perf_event.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static volatile long signals;

static void on_signal(int signo, siginfo_t *info, void *context) {
    (void)signo;
    (void)info;
    (void)context;
    signals++;
}

__attribute__((constructor)) static void arm(void) {
    const char *hz = getenv("EMPTY_TIMER_HZ");
    if (hz == NULL || atoi(hz) <= 0) {
        return;
    }
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_sigaction = on_signal;
    action.sa_flags = SA_SIGINFO | SA_RESTART;
    sigaction(SIGPROF, &action, NULL);

    const char *clock = getenv("EMPTY_TIMER_CLOCK");
    if (clock != NULL && strcmp(clock, "thread") == 0) {
        struct sigevent event;
        memset(&event, 0, sizeof event);
        event.sigev_notify = SIGEV_THREAD_ID;
        event.sigev_signo = SIGPROF;
        event._sigev_un._tid = (pid_t)syscall(SYS_gettid);
        timer_t timer;
        if (timer_create(CLOCK_THREAD_CPUTIME_ID, &event, &timer) != 0) {
            return;
        }
        long period_ns = 1000000000L / atoi(hz);
        struct itimerspec spec = {{period_ns / 1000000000L, period_ns % 1000000000L},
                                  {period_ns / 1000000000L, period_ns % 1000000000L}};
        timer_settime(timer, 0, &spec, NULL);
        return;
    }

    struct perf_event_attr attr;
    memset(&attr, 0, sizeof attr);
    attr.type = PERF_TYPE_SOFTWARE;
    attr.size = sizeof attr;
    attr.config = PERF_COUNT_SW_CPU_CLOCK;
    attr.sample_period = 1000000000 / atoi(hz);
    attr.exclude_kernel = 1;
    attr.exclude_hv = 1;
    attr.disabled = 1;
    attr.wakeup_events = 1;
    int fd = (int)syscall(SYS_perf_event_open, &attr, 0, -1, -1, PERF_FLAG_FD_CLOEXEC);
    if (fd < 0) {
        return;
    }
    fcntl(fd, F_SETFL, O_ASYNC);
    fcntl(fd, F_SETSIG, SIGPROF);
    struct f_owner_ex owner = {F_OWNER_TID, (pid_t)syscall(SYS_gettid)};
    fcntl(fd, F_SETOWN_EX, &owner);
    ioctl(fd, PERF_EVENT_IOC_ENABLE, 0);
}
