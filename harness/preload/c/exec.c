/* The variadic members of the exec family, which Rust cannot define: each collects its
 * arguments as glibc's own does and calls the vector form, which the preload library interposes
 * (`exec.rs`), so that the agent finishes its recording before the process's program is replaced.
 * Reached through the naked exported functions of `exec.rs`, which jump here with the caller's
 * registers and stack untouched. */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <unistd.h>

/* Collects `arg` and the arguments after it, up to the terminating NULL, into `argv`, a
 * variable-length array declared here as glibc's own `execl` does; leaves `ap` open after the
 * NULL (for `execle`'s environment), to be ended by the caller. */
#define COLLECT_ARGS(arg, ap, argv)                                 \
    int argc_;                                                      \
    va_start(ap, arg);                                              \
    for (argc_ = 1; va_arg(ap, const char *) != NULL; argc_++)      \
        if (argc_ == INT_MAX) {                                     \
            va_end(ap);                                             \
            errno = E2BIG;                                          \
            return -1;                                              \
        }                                                           \
    va_end(ap);                                                     \
    const char *argv[argc_ + 1];                                    \
    argv[0] = arg;                                                  \
    va_start(ap, arg);                                              \
    for (int i_ = 1; i_ <= argc_; i_++) argv[i_] = va_arg(ap, const char *)

int contprof_execl(const char *path, const char *arg, ...) {
    va_list ap;
    COLLECT_ARGS(arg, ap, argv);
    va_end(ap);
    return execv(path, (char *const *)argv);
}

int contprof_execlp(const char *file, const char *arg, ...) {
    va_list ap;
    COLLECT_ARGS(arg, ap, argv);
    va_end(ap);
    return execvp(file, (char *const *)argv);
}

int contprof_execle(const char *path, const char *arg, ...) {
    va_list ap;
    COLLECT_ARGS(arg, ap, argv);
    char *const *envp = va_arg(ap, char *const *);
    va_end(ap);
    return execve(path, (char *const *)argv, envp);
}
