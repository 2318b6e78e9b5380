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

/* Counts the arguments after `arg` up to the terminating NULL (at most INT_MAX). */
#define COUNT_ARGS(arg, ap, argc)                                   \
    do {                                                            \
        va_start(ap, arg);                                          \
        for (argc = 1; va_arg(ap, const char *) != NULL; argc++)    \
            if (argc == INT_MAX) {                                  \
                va_end(ap);                                         \
                errno = E2BIG;                                      \
                return -1;                                          \
            }                                                       \
        va_end(ap);                                                 \
    } while (0)

int contprof_execl(const char *path, const char *arg, ...) {
    va_list ap;
    int argc;
    COUNT_ARGS(arg, ap, argc);
    const char *argv[argc + 1];
    argv[0] = arg;
    va_start(ap, arg);
    for (int i = 1; i <= argc; i++) argv[i] = va_arg(ap, const char *);
    va_end(ap);
    return execv(path, (char *const *)argv);
}

int contprof_execlp(const char *file, const char *arg, ...) {
    va_list ap;
    int argc;
    COUNT_ARGS(arg, ap, argc);
    const char *argv[argc + 1];
    argv[0] = arg;
    va_start(ap, arg);
    for (int i = 1; i <= argc; i++) argv[i] = va_arg(ap, const char *);
    va_end(ap);
    return execvp(file, (char *const *)argv);
}

int contprof_execle(const char *path, const char *arg, ...) {
    va_list ap;
    int argc;
    COUNT_ARGS(arg, ap, argc);
    const char *argv[argc + 1];
    argv[0] = arg;
    va_start(ap, arg);
    for (int i = 1; i <= argc; i++) argv[i] = va_arg(ap, const char *);
    char *const *envp = va_arg(ap, char *const *);
    va_end(ap);
    return execve(path, (char *const *)argv, envp);
}
