/* serve/jobs.c — the server's fine-tuning runner: one thread that checks new jobs
 * (validating_files -> queued or failed), starts the oldest queued job in a worker process
 * (fork + exec of `liandan job-worker`, which dies with the server: PR_SET_PDEATHSIG), reaps
 * it (a crash fails the job, never the server), cancels on request (SIGTERM: the worker
 * checkpoints and stops), and after a restart puts jobs that were running back in the queue,
 * where they resume from their last checkpoint. One job runs at a time. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "liandan/io.h"
#include "liandan/registry.h"
#include "serve/ft_file.h"
#include "serve/serve_internal.h"

struct ld_jobs {
    ld_server *srv;
    char bin[4096], registry[4096];
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stopping;
    pid_t pid;      /* the running worker (0 = none) */
    char job[96];   /* its job */
};

typedef struct job_ids {
    char ids[64][96];
    int n;
} job_ids;

static void collect_id(void *user, const ld_job_row *j) {
    job_ids *l = user;
    if (l->n < 64) snprintf(l->ids[l->n++], sizeof l->ids[0], "%s", j->id);
}

static void event(ld_jobs *J, const char *id, const char *level, const char *msg) {
    ld_registry_event_add(J->srv->reg, id, level, msg, NULL);
}

static void fail_job(ld_jobs *J, const char *id, const char *msg) {
    event(J, id, "error", msg);
    ld_registry_job_set_status(J->srv->reg, id, "validating_files|queued|running", "failed", msg, NULL);
    ld_server_log(J->srv, LD_LOG_WARN, "fine-tuning job %s failed: %s", id, msg);
}

/* ---- validating_files -> queued --------------------------------------------------------------- */

typedef struct job_files {
    char train[64], val[64], model[160];
} job_files;

static void copy_files(void *user, const ld_job_row *j) {
    job_files *f = user;
    snprintf(f->train, sizeof f->train, "%s", j->training_file);
    snprintf(f->val, sizeof f->val, "%s", j->validation_file ? j->validation_file : "");
    snprintf(f->model, sizeof f->model, "%s", j->model);
}

/* Reads and checks a stored file again (it was checked when uploaded: this catches a file
 * removed or damaged since). */
static bool file_ok(ld_jobs *J, ld_ctx *ctx, const char *id, char *msg, size_t cap) {
    char path[4400];
    if (!ld_srv_file_path(J->srv, id, path, sizeof path, NULL))
        return snprintf(msg, cap, "file %s does not exist (deleted?)", id), false;
    char *bytes = NULL;
    size_t n = 0;
    ld_ft_file_info info;
    bool ok = !ld_file_read(ctx, path, (size_t)1 << 34, &bytes, &n) && !ld_ft_file_check(ctx, bytes, n, 0, &info);
    ld_free(ctx, bytes);
    if (!ok) snprintf(msg, cap, "file %s: %s", id, ld_ctx_error(ctx));
    return ok;
}

static void validate(ld_jobs *J, const char *id) {
    job_files f;
    memset(&f, 0, sizeof f);
    if (ld_registry_job_get(J->srv->reg, id, copy_files, &f)) return;
    ld_ctx *ctx = NULL;
    if (ld_ctx_new(NULL, &ctx)) return;
    char msg[700];
    bool ok = file_ok(J, ctx, f.train, msg, sizeof msg) && (!f.val[0] || file_ok(J, ctx, f.val, msg, sizeof msg));
    ld_ctx_free(ctx);
    if (!ok) return fail_job(J, id, msg);
    bool moved = false;
    ld_registry_job_set_status(J->srv->reg, id, "validating_files", "queued", NULL, &moved);
    if (moved) event(J, id, "info", "Files validated; the job is queued");
}

/* ---- the worker process ------------------------------------------------------------------------- */

static pid_t spawn(ld_jobs *J, const char *id) {
    char dir[4300], log[4400], threads[16];
    snprintf(dir, sizeof dir, "%s/.liandan/jobs", J->srv->models_dir);
    mkdir(dir, 0700);
    snprintf(dir, sizeof dir, "%s/.liandan/jobs/%s", J->srv->models_dir, id);
    mkdir(dir, 0700);
    snprintf(log, sizeof log, "%s/worker.log", dir);
    snprintf(threads, sizeof threads, "%d", J->srv->p.threads > 0 ? J->srv->p.threads : 0);
    int fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (fd < 0) {
        ld_server_log(J->srv, LD_LOG_ERROR, "fine-tuning job %s: cannot open %s: %s", id, log, strerror(errno));
        return -1;
    }
    char *argv[] = {J->bin, "job-worker", "--models-dir", J->srv->models_dir, "--registry", J->registry,
                    "--threads", threads, (char *)id, NULL};
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0) { /* only async-signal-safe calls until exec */
        prctl(PR_SET_PDEATHSIG, SIGTERM); /* the worker checkpoints and stops when the server dies */
        if (getppid() != parent) _exit(3);
        int nul = open("/dev/null", O_RDONLY);
        if (nul < 0 || dup2(nul, 0) < 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0) _exit(127);
#ifdef SYS_close_range
        syscall(SYS_close_range, 3u, ~0u, 0u); /* the listening socket and connections stay here */
#endif
        sigset_t all;
        sigemptyset(&all);
        sigprocmask(SIG_SETMASK, &all, NULL);
        execv(J->bin, argv);
        _exit(127);
    }
    int err = errno;
    close(fd);
    if (pid < 0) ld_server_log(J->srv, LD_LOG_ERROR, "fine-tuning job %s: fork: %s", id, strerror(err));
    return pid;
}

typedef struct job_state {
    char status[32];
} job_state;

static void copy_status(void *user, const ld_job_row *j) {
    snprintf(((job_state *)user)->status, sizeof ((job_state *)user)->status, "%s", j->status);
}

/* The worker of J->job ended with wait status ws (lock held). */
static void reaped(ld_jobs *J, int ws) {
    job_state s = {""};
    ld_registry_job_get(J->srv->reg, J->job, copy_status, &s);
    if (!strcmp(s.status, "running") && !J->stopping) { /* the worker left no result: it crashed */
        char msg[600];
        if (WIFSIGNALED(ws))
            snprintf(msg, sizeof msg, "the worker process was killed by signal %d (%s); its log: .liandan/jobs/%s/worker.log",
                     WTERMSIG(ws), strsignal(WTERMSIG(ws)), J->job);
        else
            snprintf(msg, sizeof msg, "the worker process exited with status %d; its log: .liandan/jobs/%s/worker.log",
                     WEXITSTATUS(ws), J->job);
        fail_job(J, J->job, msg);
    }
    ld_server_log(J->srv, LD_LOG_INFO, "fine-tuning job %s: worker %d ended (%s)", J->job, (int)J->pid,
                  s.status[0] ? s.status : "?");
    J->pid = 0, J->job[0] = 0;
}

static void *run(void *arg) {
    ld_jobs *J = arg;
    pthread_mutex_lock(&J->mu);
    while (!J->stopping) {
        if (J->pid) {
            int ws;
            pid_t r = waitpid(J->pid, &ws, WNOHANG);
            if (r == J->pid) reaped(J, ws);
        }
        job_ids l = {.n = 0};
        ld_registry_job_list(J->srv->reg, NULL, 0, "validating_files", collect_id, &l);
        for (int i = l.n - 1; i >= 0; i--) validate(J, l.ids[i]); /* oldest first */
        if (!J->pid) {
            l.n = 0;
            ld_registry_job_list(J->srv->reg, NULL, 0, "queued", collect_id, &l);
            if (l.n) {
                const char *id = l.ids[l.n - 1]; /* the oldest */
                bool started = false;
                /* running before the worker exists, so its result always finds the job running */
                if (!ld_registry_job_start(J->srv->reg, id, 0, &started) && started) {
                    pid_t pid = spawn(J, id);
                    if (pid > 0) {
                        J->pid = pid;
                        snprintf(J->job, sizeof J->job, "%s", id);
                        ld_registry_job_set_pid(J->srv->reg, id, pid);
                        ld_server_log(J->srv, LD_LOG_INFO, "fine-tuning job %s: worker %d started", id, (int)pid);
                    } else {
                        fail_job(J, id, "the worker process could not be started");
                    }
                }
            }
        }
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 200 * 1000000L;
        if (ts.tv_nsec >= 1000000000L) ts.tv_sec++, ts.tv_nsec -= 1000000000L;
        pthread_cond_timedwait(&J->cv, &J->mu, &ts);
    }
    if (J->pid) { /* the worker checkpoints and stops; the job stays running and resumes at the next start */
        kill(J->pid, SIGTERM);
        pid_t pid = J->pid;
        pthread_mutex_unlock(&J->mu);
        int ws;
        while (waitpid(pid, &ws, 0) < 0 && errno == EINTR) {
        }
        pthread_mutex_lock(&J->mu);
        J->pid = 0;
    }
    pthread_mutex_unlock(&J->mu);
    return NULL;
}

ld_status ld_jobs_start(ld_ctx *ctx, ld_server *s, const char *bin, const char *registry, ld_jobs **out) {
    *out = NULL;
    ld_jobs *J = calloc(1, sizeof *J);
    if (!J) return ld_error(ctx, LD_ERR_NOMEM, "serve: out of memory");
    J->srv = s;
    snprintf(J->bin, sizeof J->bin, "%s", bin);
    snprintf(J->registry, sizeof J->registry, "%s", registry);
    pthread_mutex_init(&J->mu, NULL);
    pthread_cond_init(&J->cv, NULL);
    /* jobs that were running when the server last stopped go back to the queue */
    job_ids l = {.n = 0};
    ld_registry_job_list(s->reg, NULL, 0, "running", collect_id, &l);
    for (int i = 0; i < l.n; i++) {
        bool moved = false;
        ld_registry_job_set_status(s->reg, l.ids[i], "running", "queued", NULL, &moved);
        if (moved) event(J, l.ids[i], "info", "The server restarted: the job is queued again and resumes from its last checkpoint");
    }
    if (pthread_create(&J->thread, NULL, run, J)) {
        pthread_mutex_destroy(&J->mu);
        pthread_cond_destroy(&J->cv);
        free(J);
        return ld_error(ctx, LD_ERR_IO, "serve: cannot start the fine-tuning thread");
    }
    *out = J;
    return LD_OK;
}

void ld_jobs_kick(ld_jobs *J) {
    if (!J) return;
    pthread_mutex_lock(&J->mu);
    pthread_cond_signal(&J->cv);
    pthread_mutex_unlock(&J->mu);
}

bool ld_jobs_cancel(ld_jobs *J, const char *id) {
    pthread_mutex_lock(&J->mu);
    bool moved = false;
    ld_registry_job_set_status(J->srv->reg, id, "validating_files|queued|running", "cancelled", NULL, &moved);
    if (moved) {
        event(J, id, "info", "Cancellation requested");
        if (J->pid && !strcmp(J->job, id)) kill(J->pid, SIGTERM);
    }
    pthread_cond_signal(&J->cv);
    pthread_mutex_unlock(&J->mu);
    return moved;
}

void ld_jobs_stop(ld_jobs *J) {
    if (!J) return;
    pthread_mutex_lock(&J->mu);
    J->stopping = true;
    pthread_cond_signal(&J->cv);
    pthread_mutex_unlock(&J->mu);
    pthread_join(J->thread, NULL);
    pthread_mutex_destroy(&J->mu);
    pthread_cond_destroy(&J->cv);
    free(J);
}
