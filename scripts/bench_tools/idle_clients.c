/*
 * idle_clients: open N logged-in connections through a pooler and hold them.
 *
 *   idle_clients -n N [-p MAX_IN_FLIGHT] [-t TIMEOUT_S] CONNINFO
 *
 * Connections are opened with PQconnectStartParams/PQconnectPoll, up to
 * MAX_IN_FLIGHT at a time (default 200), so logins overlap the way a fleet of
 * application processes starting at once would. When every attempt has ended
 * (CONNECTION_OK or failed) it prints one line on stdout:
 *
 *   ready ok=N failed=F seconds=S
 *
 * (and up to five distinct failure messages on stderr), then holds the
 * connections, watching them for being closed by the other side, and reads
 * commands from stdin, one per line:
 *
 *   status   prints "status ok=N dropped=D"
 *   verify   runs SELECT 1 on every open connection (proves each is logged in
 *            and usable); prints "verified ok=N failed=F seconds=S"
 *
 * End of stdin, SIGTERM, SIGINT or SIGHUP closes every connection and exits:
 * status 0 when every connection logged in and none was dropped, else 1.
 * Usage errors exit 2.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <libpq-fe.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

enum conn_state { ST_PENDING, ST_CONNECTING, ST_OK, ST_FAILED, ST_DROPPED };

struct client {
  PGconn *conn;
  enum conn_state state;
  PostgresPollingStatusType poll;
};

#define MAX_ERRORS 5
static struct {
  char *msg;
  int count;
} errors[MAX_ERRORS + 1]; /* the last slot counts "other" messages */

static volatile sig_atomic_t stop_requested = 0;

static void on_signal(int sig) {
  (void)sig;
  stop_requested = 1;
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void record_error(const char *msg) {
  char buf[512];
  size_t n;
  int i;
  snprintf(buf, sizeof buf, "%s", msg && *msg ? msg : "(no message)");
  n = strlen(buf);
  while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' ')) buf[--n] = '\0';
  for (i = 0; i < MAX_ERRORS; i++) {
    if (errors[i].msg == NULL) {
      errors[i].msg = strdup(buf);
      errors[i].count = 1;
      return;
    }
    if (strcmp(errors[i].msg, buf) == 0) {
      errors[i].count++;
      return;
    }
  }
  errors[MAX_ERRORS].count++;
}

static void print_errors(const char *what) {
  int i;
  for (i = 0; i < MAX_ERRORS && errors[i].msg; i++) {
    fprintf(stderr, "%s x%d: %s\n", what, errors[i].count, errors[i].msg);
    free(errors[i].msg);
    errors[i].msg = NULL;
    errors[i].count = 0;
  }
  if (errors[MAX_ERRORS].count > 0)
    fprintf(stderr, "%s x%d: (other messages)\n", what, errors[MAX_ERRORS].count);
  errors[MAX_ERRORS].count = 0;
}

static void raise_nofile(long want) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return;
  if ((long)rl.rlim_cur >= want) return;
  rl.rlim_cur = (rlim_t)want;
  if (rl.rlim_max != RLIM_INFINITY && rl.rlim_cur > rl.rlim_max) rl.rlim_cur = rl.rlim_max;
  setrlimit(RLIMIT_NOFILE, &rl);
  getrlimit(RLIMIT_NOFILE, &rl);
  if ((long)rl.rlim_cur < want)
    fprintf(stderr, "warning: open files limit %ld is below the %ld needed\n",
            (long)rl.rlim_cur, want);
}

/* Handles input on an established connection while holding it: anything the
 * pooler sends (ParameterStatus, a notice, an error before closing) is
 * consumed; a closed socket marks the connection dropped. */
static void check_alive(struct client *c, int *ok, int *dropped) {
  PGresult *res;
  if (!PQconsumeInput(c->conn) || PQstatus(c->conn) != CONNECTION_OK) {
    record_error(PQerrorMessage(c->conn));
    PQfinish(c->conn);
    c->conn = NULL;
    c->state = ST_DROPPED;
    (*ok)--;
    (*dropped)++;
    return;
  }
  while (!PQisBusy(c->conn) && (res = PQgetResult(c->conn)) != NULL) PQclear(res);
}

static void usage(const char *argv0) {
  fprintf(stderr, "usage: %s -n N [-p MAX_IN_FLIGHT] [-t TIMEOUT_S] CONNINFO\n", argv0);
  exit(2);
}

int main(int argc, char **argv) {
  long n = -1, max_in_flight = 200;
  double timeout_s = 600;
  const char *conninfo;
  struct client *clients;
  struct pollfd *pfds;
  long *pidx;
  long next = 0, in_flight = 0, i;
  int ok = 0, failed = 0, dropped = 0, opt;
  double t0;
  struct sigaction sa;

  while ((opt = getopt(argc, argv, "n:p:t:")) != -1) {
    switch (opt) {
      case 'n': n = strtol(optarg, NULL, 10); break;
      case 'p': max_in_flight = strtol(optarg, NULL, 10); break;
      case 't': timeout_s = strtod(optarg, NULL); break;
      default: usage(argv[0]);
    }
  }
  if (n < 0 || max_in_flight < 1 || optind != argc - 1) usage(argv[0]);
  conninfo = argv[optind];

  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal; /* no SA_RESTART: poll() returns EINTR */
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGHUP, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);
  setvbuf(stdout, NULL, _IOLBF, 0);

  raise_nofile(n + 64);

  clients = calloc((size_t)n + 1, sizeof *clients);
  pfds = calloc((size_t)n + 2, sizeof *pfds);
  pidx = calloc((size_t)n + 2, sizeof *pidx);
  if (!clients || !pfds || !pidx) {
    fprintf(stderr, "out of memory\n");
    return 1;
  }

  /* Phase 1: log in N clients, at most max_in_flight at a time. */
  t0 = now_s();
  while (!stop_requested && (next < n || in_flight > 0)) {
    long np = 0;
    int rc;
    while (next < n && in_flight < max_in_flight) {
      const char *const keys[] = {"dbname", NULL};
      const char *const vals[] = {conninfo, NULL};
      struct client *c = &clients[next++];
      c->conn = PQconnectStartParams(keys, vals, 1);
      if (c->conn == NULL || PQstatus(c->conn) == CONNECTION_BAD) {
        record_error(c->conn ? PQerrorMessage(c->conn) : "out of memory");
        if (c->conn) PQfinish(c->conn);
        c->conn = NULL;
        c->state = ST_FAILED;
        failed++;
        continue;
      }
      c->state = ST_CONNECTING;
      c->poll = PGRES_POLLING_WRITING; /* as documented for a fresh attempt */
      pidx[in_flight++] = next - 1;
    }
    /* pidx holds the attempts in flight: rebuild the poll set from it. */
    for (i = 0; i < in_flight; i++) {
      struct client *c = &clients[pidx[i]];
      pfds[np].fd = PQsocket(c->conn);
      pfds[np].events = c->poll == PGRES_POLLING_READING ? POLLIN : POLLOUT;
      pfds[np].revents = 0;
      np++;
    }
    if (np == 0) continue;
    if (now_s() - t0 > timeout_s) {
      for (i = 0; i < np; i++) {
        struct client *c = &clients[pidx[i]];
        record_error("timed out logging in");
        PQfinish(c->conn);
        c->conn = NULL;
        c->state = ST_FAILED;
        failed++;
        in_flight--;
      }
      break;
    }
    rc = poll(pfds, (nfds_t)np, 1000);
    if (rc < 0) {
      if (errno == EINTR) continue;
      perror("poll");
      return 1;
    }
    for (i = 0; i < np; i++) {
      struct client *c = &clients[pidx[i]];
      if (pfds[i].revents == 0) continue;
      c->poll = PQconnectPoll(c->conn);
      if (c->poll == PGRES_POLLING_OK) {
        c->state = ST_OK;
        ok++;
        in_flight--;
      } else if (c->poll == PGRES_POLLING_FAILED) {
        record_error(PQerrorMessage(c->conn));
        PQfinish(c->conn);
        c->conn = NULL;
        c->state = ST_FAILED;
        failed++;
        in_flight--;
      }
    }
    {
      long kept = 0;
      for (i = 0; i < np; i++) {
        if (clients[pidx[i]].state == ST_CONNECTING) pidx[kept++] = pidx[i];
      }
    }
  }
  /* Attempts interrupted or never started count as failures. */
  failed += (int)(n - next);
  for (i = 0; i < next; i++) {
    if (clients[i].state == ST_CONNECTING) {
      record_error("interrupted while logging in");
      clients[i].state = ST_FAILED;
      failed++;
    }
  }
  /* Double-check: every connection we count is really logged in. */
  for (i = 0; i < n; i++) {
    struct client *c = &clients[i];
    if (c->state == ST_OK && PQstatus(c->conn) != CONNECTION_OK) {
      record_error(PQerrorMessage(c->conn));
      c->state = ST_FAILED;
      ok--;
      failed++;
    }
  }
  print_errors("login failed");
  printf("ready ok=%d failed=%d seconds=%.2f\n", ok, failed, now_s() - t0);

  /* Phase 2: hold them until stdin closes or a signal arrives. */
  {
    char line[256];
    size_t used = 0;
    int stdin_open = 1;
    while (!stop_requested && stdin_open) {
      long np = 0;
      int rc;
      pfds[np].fd = STDIN_FILENO;
      pfds[np].events = POLLIN;
      pfds[np].revents = 0;
      pidx[np++] = -1;
      for (i = 0; i < n; i++) {
        if (clients[i].state != ST_OK) continue;
        pfds[np].fd = PQsocket(clients[i].conn);
        pfds[np].events = POLLIN;
        pfds[np].revents = 0;
        pidx[np++] = i;
      }
      rc = poll(pfds, (nfds_t)np, -1);
      if (rc < 0) {
        if (errno == EINTR) continue;
        perror("poll");
        break;
      }
      for (i = 1; i < np; i++) {
        if (pfds[i].revents) check_alive(&clients[pidx[i]], &ok, &dropped);
      }
      if (dropped > 0) print_errors("dropped");
      if (pfds[0].revents) {
        ssize_t r = read(STDIN_FILENO, line + used, sizeof line - 1 - used);
        char *nl;
        if (r <= 0) {
          stdin_open = 0;
          break;
        }
        used += (size_t)r;
        line[used] = '\0';
        while ((nl = strchr(line, '\n')) != NULL) {
          *nl = '\0';
          if (strcmp(line, "status") == 0) {
            printf("status ok=%d dropped=%d\n", ok, dropped);
          } else if (strcmp(line, "verify") == 0) {
            int vok = 0, vfailed = 0;
            double v0 = now_s();
            for (i = 0; i < n && !stop_requested; i++) {
              PGresult *res;
              if (clients[i].state != ST_OK) continue;
              res = PQexec(clients[i].conn, "SELECT 1");
              if (res && PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1 &&
                  strcmp(PQgetvalue(res, 0, 0), "1") == 0) {
                vok++;
              } else {
                vfailed++;
                record_error(PQerrorMessage(clients[i].conn));
              }
              PQclear(res);
            }
            print_errors("verify failed");
            printf("verified ok=%d failed=%d seconds=%.2f\n", vok, vfailed, now_s() - v0);
          } else if (line[0] != '\0') {
            fprintf(stderr, "unknown command: %s\n", line);
          }
          used -= (size_t)(nl + 1 - line);
          memmove(line, nl + 1, used + 1);
        }
        if (used >= sizeof line - 1) used = 0; /* overlong line: drop it */
      }
    }
  }

  for (i = 0; i < n; i++) {
    if (clients[i].conn) PQfinish(clients[i].conn);
  }
  printf("closed ok=%d failed=%d dropped=%d\n", ok, failed, dropped);
  free(clients);
  free(pfds);
  free(pidx);
  return (failed == 0 && dropped == 0) ? 0 : 1;
}
