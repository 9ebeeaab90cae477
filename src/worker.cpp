#include "src/worker.hpp"

#include <spdlog/spdlog.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <fcntl.h>
#include <grp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "auth/crypto.hpp"
#include "protocol/builders.hpp"
#include "src/logging.hpp"

namespace pgmux {

const char* to_string(CloseReason r) {
  switch (r) {
    case CloseReason::client_terminate: return "client terminated";
    case CloseReason::client_gone: return "client disconnected";
    case CloseReason::login_timeout: return "client_login_timeout";
    case CloseReason::auth_failed: return "authentication failed";
    case CloseReason::protocol_violation: return "protocol violation";
    case CloseReason::too_many_clients: return "connection limit";
    case CloseReason::wait_failed: return "no server available";
    case CloseReason::server_gone: return "server connection lost";
    case CloseReason::shutdown: return "shutdown";
    case CloseReason::internal_error: return "internal error";
    case CloseReason::cancel_request: return "cancel request";
    case CloseReason::unsupported: return "unsupported request";
    case CloseReason::timeout: return "timeout";
    case CloseReason::killed: return "killed from the admin console";
    case CloseReason::disabled: return "database disabled";
    case CloseReason::server_outdated: return "server_fast_close";
  }
  return "?";
}

// ---------------------------------------------------------------------------
// Listeners

class Listener {
 public:
  Listener(Worker& w, conf::ListenAddr addr) : worker_(w), addr_(std::move(addr)) {
    std::memset(&h_, 0, sizeof(h_));
  }
  ~Listener() = default;

  bool start() {
    int rc;
    if (addr_.is_unix) {
      uv_pipe_init(worker_.loop(), &h_.pipe, 0);
      h_.handle.data = this;
      open_ = true;
      // A stale socket file from a previous run, or the one of a pgmux
      // draining while this one takes over: new clients come here now.
      ::unlink(addr_.path.c_str());
      rc = uv_pipe_bind(&h_.pipe, addr_.path.c_str());
      if (rc == 0 && !set_socket_file_access()) return false;
      if (rc == 0) {
        struct stat st {};
        if (::stat(addr_.path.c_str(), &st) == 0) {
          bound_dev_ = st.st_dev;
          bound_ino_ = st.st_ino;
        }
      }
    } else {
      sockaddr_storage ss{};
      std::string host = addr_.host;
      if (host == "*" || host.empty()) host = ipv6_available() ? "::" : "0.0.0.0";
      rc = uv_ip4_addr(host.c_str(), addr_.port, reinterpret_cast<sockaddr_in*>(&ss));
      if (rc != 0) rc = uv_ip6_addr(host.c_str(), addr_.port, reinterpret_cast<sockaddr_in6*>(&ss));
      if (rc != 0) {
        spdlog::critical("cannot listen on {}: {}", addr_.text, uv_strerror(rc));
        return false;
      }
      // The socket exists before bind, so SO_REUSEPORT can be set on it.
      rc = uv_tcp_init_ex(worker_.loop(), &h_.tcp, ss.ss_family);
      if (rc != 0) {
        spdlog::critical("cannot listen on {}: {}", addr_.text, uv_strerror(rc));
        return false;
      }
      h_.handle.data = this;
      open_ = true;
      if (worker_.config().so_reuseport) {
        uv_os_fd_t fd;
        int one = 1;
        rc = uv_fileno(&h_.handle, &fd);
        if (rc == 0 && ::setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0) rc = -errno;
        reuseport_ = rc == 0;
      }
      if (rc == 0) rc = uv_tcp_bind(&h_.tcp, reinterpret_cast<const sockaddr*>(&ss), 0);
      // Accepted when the first bytes (startup packet or SSLRequest)
      // arrive: one wakeup per login instead of two.
      if (const auto secs = std::chrono::duration_cast<std::chrono::seconds>(worker_.config().tcp_defer_accept);
          rc == 0 && secs.count() > 0) {
        uv_os_fd_t fd;
        const int value = static_cast<int>(secs.count());
        if (uv_fileno(&h_.handle, &fd) != 0 ||
            ::setsockopt(fd, IPPROTO_TCP, TCP_DEFER_ACCEPT, &value, sizeof value) != 0)
          spdlog::warn("{}: the kernel refused TCP_DEFER_ACCEPT: {}", addr_.text, std::strerror(errno));
      }
    }
    if (rc == 0) rc = uv_listen(&h_.stream, worker_.config().listen_backlog, on_connection);
    if (rc != 0) {
      spdlog::critical("cannot listen on {}: {}{}", addr_.text, uv_strerror(rc),
                       rc == UV_EADDRINUSE && !addr_.is_unix && !worker_.config().so_reuseport
                           ? " (another process listens there; so_reuseport = true lets a new pgmux "
                             "take over from a draining one)"
                           : "");
      return false;
    }
    spdlog::info("listening on {}{}", addr_.text, reuseport_ ? " (SO_REUSEPORT)" : "");
    return true;
  }

  // [pgmux] unix_socket_mode and unix_socket_group on the socket file.
  bool set_socket_file_access() {
    const conf::Config& c = worker_.config();
    const char* path = addr_.path.c_str();
    if (!c.unix_socket_group.empty()) {
      gid_t gid = 0;
      if (!group_id(c.unix_socket_group, gid)) {
        spdlog::critical("cannot listen on {}: unix_socket_group \"{}\" is no group on this system", addr_.text,
                         c.unix_socket_group);
        ::unlink(path);
        return false;
      }
      if (::chown(path, static_cast<uid_t>(-1), gid) != 0) {
        spdlog::critical("cannot listen on {}: chown to group \"{}\": {}", addr_.text, c.unix_socket_group,
                         std::strerror(errno));
        ::unlink(path);
        return false;
      }
    }
    if (::chmod(path, static_cast<mode_t>(c.unix_socket_mode)) != 0) {
      spdlog::critical("cannot listen on {}: chmod {:o}: {}", addr_.text, c.unix_socket_mode, std::strerror(errno));
      ::unlink(path);
      return false;
    }
    return true;
  }

  // A group name, or a numeric group id.
  static bool group_id(const std::string& name, gid_t& gid) {
    std::vector<char> buf(16384);
    group g{};
    group* found = nullptr;
    if (::getgrnam_r(name.c_str(), &g, buf.data(), buf.size(), &found) == 0 && found) {
      gid = found->gr_gid;
      return true;
    }
    if (!name.empty() && name.find_first_not_of("0123456789") == std::string::npos && name.size() < 10) {
      gid = static_cast<gid_t>(std::stoul(name));
      return true;
    }
    return false;
  }

  // `drain`: clients the kernel already queued on this socket are accepted
  // and served first. With SO_REUSEPORT every listener of the group has its
  // own queue, and closing the socket would reset the connections in it.
  void stop(bool drain = false) {
    if (!open_) return;
    open_ = false;
    if (drain && reuseport_) {
      uv_os_fd_t fd;
      if (uv_fileno(&h_.handle, &fd) == 0) {
        for (;;) {
          int c = ::accept4(fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
          if (c < 0) break;
          adopt_drained(c);
        }
      }
    }
    uv_close(&h_.handle, nullptr);
    if (addr_.is_unix) {
      // Only our own file: a pgmux that took over may have bound the path.
      struct stat st {};
      if (::stat(addr_.path.c_str(), &st) == 0 && st.st_dev == bound_dev_ && st.st_ino == bound_ino_)
        ::unlink(addr_.path.c_str());
    }
  }

 private:
  static bool ipv6_available() {
    int fd = ::socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return false;
    sockaddr_in6 a{};
    a.sin6_family = AF_INET6;
    a.sin6_addr = in6addr_any;
    const bool ok = ::bind(fd, reinterpret_cast<const sockaddr*>(&a), sizeof a) == 0;
    ::close(fd);
    return ok;
  }

  static void on_connection(uv_stream_t* server, int status) {
    auto* self = static_cast<Listener*>(server->data);
    if (status < 0) {
      spdlog::error("accept on {} failed: {}", self->addr_.text, uv_strerror(status));
      return;
    }
    const Socket::Kind kind = self->addr_.is_unix ? Socket::Kind::pipe : Socket::Kind::tcp;
    Worker& w = self->worker_;
    const size_t target = w.hub().pick_worker();
    if (target == w.index()) {
      auto* c = new ClientConnection(w, kind);
      if (c->socket().accept_from(server) != 0) {
        c->close(CloseReason::client_gone);
        return;
      }
      begin(w, c);
      return;
    }
    // Another worker serves it: the socket goes there as a bare fd (a
    // duplicate; the handle that accepted it closes its own).
    auto* tmp = new StreamHandle;
    std::memset(tmp, 0, sizeof *tmp);
    if (self->addr_.is_unix) uv_pipe_init(w.loop(), &tmp->pipe, 0);
    else uv_tcp_init(w.loop(), &tmp->tcp);
    int fd = -1;
    uv_os_fd_t afd;
    if (uv_accept(server, &tmp->stream) == 0 && uv_fileno(&tmp->handle, &afd) == 0)
      fd = ::fcntl(afd, F_DUPFD_CLOEXEC, 0);
    uv_close(&tmp->handle, [](uv_handle_t* h) { delete reinterpret_cast<StreamHandle*>(h); });
    if (fd < 0) {
      spdlog::error("accept on {} failed: {}", self->addr_.text, std::strerror(errno));
      w.hub().worker(target).load.fetch_sub(1, std::memory_order_relaxed);
      return;
    }
    hand_over(w.hub().worker(target), fd, kind, false);
  }

  // A client socket accepted on one worker, served by `to`.
  // `drained`: accepted while draining, served even if `to` is shutting
  // down by the time it takes it.
  static void hand_over(Worker& to, int fd, Socket::Kind kind, bool drained) {
    auto owned = std::make_shared<OwnedFd>(fd);
    to.post([owned, kind, drained](Worker& w) { adopt(w, owned->release(), kind, drained); });
  }

  struct OwnedFd {
    explicit OwnedFd(int f) : fd(f) {}
    ~OwnedFd() {
      if (fd >= 0) ::close(fd);  // the worker stopped before taking it
    }
    int release() { return std::exchange(fd, -1); }
    int fd;
  };

  static void adopt(Worker& w, int fd, Socket::Kind kind, bool drained) {
    if (w.reported_stop_) {  // stopped while the socket was on its way
      ::close(fd);
      w.load.fetch_sub(1, std::memory_order_relaxed);
      return;
    }
    auto* c = new ClientConnection(w, kind);
    if (c->socket().adopt(fd) != 0) {
      ::close(fd);
      c->close(CloseReason::client_gone);
      return;
    }
    if (drained) c->start();
    else begin(w, c);
  }

  // Accepted while draining: served here like any client already here
  // (another worker may be stopping or gone by now).
  void adopt_drained(int fd) {
    worker_.load.fetch_add(1, std::memory_order_relaxed);
    adopt(worker_, fd, Socket::Kind::tcp, true);
  }

  static void begin(Worker& w, ClientConnection* c) {
    if (w.shutting_down_) {
      c->close(CloseReason::shutdown);
      return;
    }
    c->start();
  }

  Worker& worker_;
  conf::ListenAddr addr_;
  StreamHandle h_;
  bool open_ = false;
  bool reuseport_ = false;
  dev_t bound_dev_ = 0;
  ino_t bound_ino_ = 0;
};

// ---------------------------------------------------------------------------
// Cancel requests go to the server on a fresh connection, with the server's
// own key, like libpq does. PostgreSQL answers nothing and closes the
// connection once it has signalled the backend; until then the server
// connection is not handed to another client (ServerConnection::cancel_sent).

class CancelSender final : public SocketOwner {
 public:
  CancelSender(Worker& w, ServerConnection* s)
      : server(s),
        started_ms(uv_now(w.loop())),
        worker_(w),
        socket_(w.loop(), (!s->host().empty() && s->host()[0] == '/') ? Socket::Kind::pipe : Socket::Kind::tcp,
                this) {
    s->cancel_sent();
    proto::cancel_request(packet_, s->backend_pid(), s->backend_key());
    if (socket_.kind() == Socket::Kind::pipe) {
      socket_.connect_unix(s->host() + "/.s.PGSQL." + std::to_string(s->port()));
      return;
    }
    sockaddr_storage ss{};
    int rc = uv_ip4_addr(s->host().c_str(), s->port(), reinterpret_cast<sockaddr_in*>(&ss));
    if (rc != 0) rc = uv_ip6_addr(s->host().c_str(), s->port(), reinterpret_cast<sockaddr_in6*>(&ss));
    if (rc == 0) rc = socket_.connect(reinterpret_cast<const sockaddr*>(&ss));
    if (rc != 0) {
      spdlog::warn("cancel: cannot connect to {}:{}: {}", s->host(), s->port(), uv_strerror(rc));
      socket_.close();
    }
  }

  // No answer in time (Worker::expire_cancels): given up.
  void expire() {
    if (sent_ && !answered_)
      spdlog::warn("cancel: no answer from {}:{} in time; {} will be closed instead of reused",
                   server ? server->host() : "?", server ? server->port() : 0, server ? server->name() : "its server");
    abandon();
  }
  void abandon() { socket_.close(); }

  ServerConnection* server;  // nullptr once it is gone (Worker::server_finished)
  const uint64_t started_ms;

 private:
  void on_connected(Socket&, int status) override {
    if (status != 0) {
      spdlog::warn("cancel: connect failed: {}", uv_strerror(status));
      socket_.close();
      return;
    }
    sent_ = true;
    socket_.write(std::move(packet_));
    if (socket_.read_start() != 0) socket_.close();
  }
  void on_read(Socket&, IoBufferPtr, size_t) override {}
  // PostgreSQL closed it: the backend has been signalled.
  void on_read_end(Socket&, int) override {
    answered_ = true;
    socket_.close();
  }
  // Not delivered, so nothing will land.
  void on_write_error(Socket&, int) override {
    sent_ = false;
    socket_.close();
  }
  void on_closed(Socket&) override {
    worker_.cancel_finished(this);
    if (server) server->cancel_done(!sent_ || answered_);
    delete this;
  }

  Worker& worker_;
  Socket socket_;
  std::string packet_;
  bool sent_ = false;
  bool answered_ = false;
};

void Worker::cancel_finished(CancelSender* c) { std::erase(cancels_, c); }

// Cancel requests PostgreSQL has not answered within cancel_wait_timeout
// are given up.
void Worker::expire_cancels(uint64_t now_ms) {
  if (config_->cancel_wait_timeout.count() <= 0) return;
  const auto limit = uint64_t(config_->cancel_wait_timeout.count());
  for (CancelSender* c : std::vector<CancelSender*>(cancels_))
    if (now_ms - c->started_ms >= limit) c->expire();
}

// ---------------------------------------------------------------------------

bool load_config_files(const conf::Config& c, ConfigFiles& out, std::string& error) {
  ConfigFiles f;
  if (!c.auth.file.empty()) {
    auto ul = auth::load_userlist(c.auth.file);
    if (!ul.list) {
      error = "userlist " + c.auth.file + ": " + ul.error;
      return false;
    }
    f.userlist = ul.list;
    // Unknown users are answered with scram_iterations; a verifier with
    // another count tells an observer that its user exists.
    std::map<int, int> counts;
    for (const auto& [name, s] : f.userlist->users)
      if (s.kind == auth::SecretKind::scram && s.scram.iterations != c.scram_iterations) ++counts[s.scram.iterations];
    for (const auto& [iterations, n] : counts)
      spdlog::warn("userlist {}: {} SCRAM verifier(s) use {} iterations, [pgmux] scram_iterations is {}: an unknown "
                   "user's login can be told from theirs (set scram_iterations = {})",
                   c.auth.file, n, iterations, c.scram_iterations, iterations);
  }
  if (!tls::make_contexts(c, f.client_tls, f.server_tls, error)) return false;
  if (c.auth.type == conf::AuthType::hba) {
    auto h = auth::load_hba_file(c.auth.hba_file);
    if (!h.rules) {
      error = "[auth] hba_file: " + h.error;
      return false;
    }
    f.hba = h.rules;
    if (!c.auth.ident_file.empty()) {
      auto im = auth::load_ident_file(c.auth.ident_file);
      if (!im.map) {
        error = "[auth] ident_file: " + im.error;
        return false;
      }
      f.ident = im.map;
    }
    // Every map= must name a map of the ident file (PostgreSQL finds out at
    // the first login; a typo should not wait for one).
    for (const auth::HbaRule& r : f.hba->rules) {
      if (!r.map) continue;
      if (!f.ident) {
        error = "[auth] hba_file: " + c.auth.hba_file + ":" + std::to_string(r.line) + ": map=" + *r.map +
                " but [auth] ident_file is not set";
        return false;
      }
      if (!f.ident->has_map(*r.map)) {
        error = "[auth] hba_file: " + c.auth.hba_file + ":" + std::to_string(r.line) + ": map \"" + *r.map +
                "\" is not in " + c.auth.ident_file;
        return false;
      }
    }
  }
  out = std::move(f);
  return true;
}

Worker::Worker(Hub& hub, size_t index, std::shared_ptr<const conf::Config> config, ConfigFiles files)
    : hub_(hub),
      index_(index),
      config_(std::move(config)),
      files_(std::move(files)),
      auth_query_(std::make_unique<AuthQuery>(*this)) {
  uv_loop_init(&loop_);
  uv_async_init(&loop_, &inbox_async_, on_inbox);
  inbox_async_.data = this;
  // The inbox alone does not keep the loop running (run() closes it).
  uv_unref(reinterpret_cast<uv_handle_t*>(&inbox_async_));
  uv_timer_init(&loop_, &tick_timer_);
  tick_timer_.data = this;
  uv_check_init(&loop_, &serve_check_);
  serve_check_.data = this;
  uv_check_start(&serve_check_, on_serve_check);
  uv_unref(reinterpret_cast<uv_handle_t*>(&serve_check_));
  uv_idle_init(&loop_, &serve_idle_);
}

Worker::~Worker() {
  auth_query_.reset();  // lookups wait in pools
  routes_.clear();  // checkers wait in pools
  pools_.clear();
  uv_loop_close(&loop_);
}

bool Worker::start() {
  if (index_ == 0) {  // the first worker accepts for all
    for (const auto& a : config_->listen) {
      auto l = std::make_unique<Listener>(*this, a);
      bool ok = l->start();
      listeners_.push_back(std::move(l));
      if (!ok) return false;
    }
  }
  for (const auto& [name, db] : config_->databases)
    if (db.routed()) start_route(name, db);
  for (auto& [name, r] : routes_)
    for (auto& c : r->checks) c->tick(now());
  uv_timer_start(&tick_timer_, on_tick, 100, 100);
  return true;
}

void Worker::start_route(const std::string& name, const conf::DatabaseConfig& db) {
  auto route = std::make_shared<RouteState>(config_, db);
  RouteState& r = *route;
  routes_[name] = std::move(route);
  std::string names;
  for (size_t i = 0; i < r.router.size(); ++i)
    names += (i ? ", " : "") + r.router.backend(i).name;
  spdlog::info("database {}: backends {}; read_routing {}, checks every {} as \"{}\"", name, names,
               conf::to_string(db.read_routing), conf::format_duration(db.health_check_interval),
               *db.check_user());
  // The first worker checks for all (Worker::check_done): one check
  // connection per backend, whatever the number of workers.
  if (index_ != 0) return;
  for (size_t i = 0; i < r.router.size(); ++i)
    r.checks.push_back(std::make_unique<HealthCheck>(*this, r, i));
}

void Worker::retire_route(std::map<std::string, std::shared_ptr<RouteState>, std::less<>>::iterator it) {
  // Clients logged in before keep routing with its last view of the
  // backends until they leave; nothing checks them any more.
  for (auto& c : it->second->checks) c->stop();
  routes_.erase(it);
}

std::shared_ptr<RouteState> Worker::route_for(const conf::DatabaseConfig& db) {
  auto it = routes_.find(db.name);
  return it == routes_.end() ? nullptr : it->second;
}

pool::Pool& Worker::auth_pool(const conf::DatabaseConfig& db, const std::string& client_database) {
  const conf::AuthLookup l = config_->auth_lookup(db);
  // A named entry (auth_dbname): one pool there for the lookups of every
  // entry that names it (the loader checked that it exists).
  if (!l.database->empty())
    if (auto it = config_->databases.find(*l.database); it != config_->databases.end())
      return pool_for(PoolKey{it->first, *l.user, 0, true, true}, it->second);
  // Else keyed by the client's database name: the lookup runs in the
  // database the client asked for (for "*", that name reaches only this entry).
  return pool_for(PoolKey{client_database, *l.user, 0, true, true}, db);
}

const auth::Secret* Worker::find_secret(const std::string& user, const std::string& database) const {
  if (files_.userlist)
    if (const auth::Secret* s = files_.userlist->find(user)) return s;
  return auth_query_->known(database, user);
}

pool::Pool& Worker::health_pool(RouteState& route, size_t backend) {
  const conf::DatabaseConfig& db = *route.db;
  return pool_for(PoolKey{db.name, *db.check_user(), uint16_t(backend), true}, db, route.owner);
}

void Worker::check_done(RouteState& route, size_t backend, const CheckSample& sample) {
  apply_check(route, backend, sample, true);
  // The others find the database's route by name, and take the outcome
  // only where that backend is the same one (a reload may be under way).
  hub_.broadcast(this, [this, db = route.db->name, name = route.router.backend(backend).name, backend,
                           sample](Worker& x) {
    if (&x == this) return;  // applied above, to the route checked
    auto it = x.routes_.find(db);
    if (it == x.routes_.end()) return;
    RouteState& r = *it->second;
    if (backend < r.router.size() && r.router.backend(backend).name == name) x.apply_check(r, backend, sample, false);
  });
}

void Worker::apply_check(RouteState& route, size_t backend, const CheckSample& sample, bool log) {
  const auto events = sample.ok ? route.router.check_ok(backend, sample.in_recovery, sample.lsn,
                                                        sample.lag_seconds, sample.started)
                                : route.router.check_failed(backend, sample.error);
  const pool::BackendStatus& b = route.router.backend(backend);
  if (log) {
    for (const auto& e : events) {
      const std::string& name = route.router.backend(e.backend).name;
      if (b.up) spdlog::info("database {} backend {}: {}", route.db->name, name, e.text);
      else spdlog::warn("database {} backend {}: {}", route.db->name, name, e.text);
    }
  }
  for (auto& [key, entry] : pools_) {
    if (entry.db != route.db || key.backend != backend || key.health) continue;
    if (b.up) entry.pool->clear_backoff();
    else if (!events.empty()) entry.pool->close_idle("backend is down");
  }
}

int Worker::run() {
  io_buffers_ = io_buffers_outstanding_counter();
  int rc = uv_run(&loop_, UV_RUN_DEFAULT);
  io_buffers_ = nullptr;  // the thread's counter ends with the thread
  close_inbox();
  uv_close(reinterpret_cast<uv_handle_t*>(&inbox_async_), nullptr);
  uv_run(&loop_, UV_RUN_DEFAULT);
  return rc;
}

bool Worker::post(std::function<void(Worker&)> fn) {
  std::lock_guard lk(inbox_mu_);
  if (inbox_closed_) return false;
  inbox_.push_back(std::move(fn));
  uv_async_send(&inbox_async_);
  return true;
}

bool Worker::ask_park() {
  std::lock_guard lk(inbox_mu_);
  if (inbox_closed_) return false;
  park_asked_.store(true);
  uv_async_send(&inbox_async_);
  return true;
}

void Worker::park_if_asked() {
  if (park_asked_.exchange(false)) hub_.park();
}

void Worker::on_inbox(uv_async_t* h) {
  auto* w = static_cast<Worker*>(h->data);
  w->park_if_asked();
  std::vector<std::function<void(Worker&)>> work;
  {
    std::lock_guard lk(w->inbox_mu_);
    work.swap(w->inbox_);
  }
  for (auto& fn : work) {
    fn(*w);
    w->park_if_asked();  // a long batch must not hold a reader up
  }
}

// The loop has ended: nothing runs here any more. A reader waiting for
// this worker to park counts it as parked.
void Worker::close_inbox() {
  std::vector<std::function<void(Worker&)>> dropped;
  {
    std::lock_guard lk(inbox_mu_);
    inbox_closed_ = true;
    dropped.swap(inbox_);
  }
  if (park_asked_.exchange(false)) hub_.park_gone();
  // Slots granted to this worker and not used go back.
  hub_.for_each_limit([&](Hub::LimitKind, const std::string&, pool::SharedLimit& l) { l.drop_grants(index_); });
}

void Worker::on_tick(uv_timer_t* t) { static_cast<Worker*>(t->data)->tick(); }

uint64_t Worker::param_set_id(const pool::Params& params) {
  std::vector<std::pair<std::string, const std::string*>> sorted;
  sorted.reserve(params.size());
  for (const auto& [k, v] : params) {
    std::string lower(k);
    for (char& ch : lower)
      if (ch >= 'A' && ch <= 'Z') ch = char(ch - 'A' + 'a');
    sorted.emplace_back(std::move(lower), &v);
  }
  std::sort(sorted.begin(), sorted.end());
  std::string key;
  for (const auto& [k, v] : sorted) {
    key += k;
    key += '\0';
    key += *v;
    key += '\0';
  }
  // Bounded: a flood of distinct sets (say, a unique application_name per
  // connection) only costs memoisation, never memory.
  constexpr size_t kMaxParamSets = 4096;
  if (param_sets_.size() >= kMaxParamSets && !param_sets_.contains(key)) param_sets_.clear();
  auto [it, added] = param_sets_.try_emplace(std::move(key), 0);
  if (added) it->second = ++last_param_set_;
  return it->second;
}

void Worker::defer_serve(pool::Pool& pool) {
  // Deferred from a timer or a check callback, the serve must not wait for
  // the next I/O event: an active idle handle makes the next poll not block.
  if (deferred_serves_.empty()) uv_idle_start(&serve_idle_, [](uv_idle_t*) {});
  deferred_serves_.push_back(&pool);
}

void Worker::forget_pool(pool::Pool& pool) {
  std::erase(deferred_serves_, &pool);
}

void Worker::on_serve_check(uv_check_t* h) {
  auto* w = static_cast<Worker*>(h->data);
  // Serving may release servers again (a client that closes at once): loop
  // until nothing is deferred, so no queued client waits for the next turn.
  while (!w->deferred_serves_.empty()) {
    pool::Pool* p = w->deferred_serves_.back();
    w->deferred_serves_.pop_back();
    p->serve_deferred();
  }
  uv_idle_stop(&w->serve_idle_);
  if (w->fast_close_due_) {
    w->fast_close_due_ = false;
    w->close_outdated_sessions();
  }
}

void Worker::tick() {
  auto now = this->now();
  auto login_timeout = config_->client_login_timeout;
  if (login_timeout.count() > 0) {
    while (ClientConnection* c = logging_in_.front()) {
      if (now - c->login_started() < login_timeout) break;
      auto e = proto::fatal_error(proto::sqlstate::kProtocolViolation, "client_login_timeout");
      end_login(c);
      c->close(CloseReason::login_timeout, &e);
    }
  }
  for (auto& [key, entry] : pools_) entry.pool->tick();
  for (auto& [name, r] : routes_)
    for (auto& c : r->checks) c->tick(now);
  balance_shared_limits();
  if (retired_pools_ && ticks_ % 10 == 0) drop_retired_pools();
  if (ticks_ % 10 == 5) drop_idle_auto_pools(uv_now(&loop_));
  if (!delayed_closes_.empty()) run_delayed_closes();
  if (!cancels_.empty()) expire_cancels(uv_now(&loop_));
  auth_query_->tick(now, config_->client_login_timeout);
  if (!admin_waits_.empty()) check_admin_waits();
  if (index_ == 0) maybe_log_stats(now);
  if (shutdown_request_) {
    int r = shutdown_request_;
    shutdown_request_ = 0;
    spdlog::info("admin console: SHUTDOWN{}", r == 2 ? " WAIT_FOR_CLIENTS" : "");
    hub_.broadcast(this, [r](Worker& w) {
      if (r == 2) w.shutdown_gracefully(/*wait_for_clients=*/true);
      else w.shutdown_now();
    });
    return;
  }
  if (++ticks_ % 5 == 0) {
    check_client_timeouts();
    if (config_->server_fast_close) close_outdated_sessions();
  }
  if (shutting_down_) maybe_finish_shutdown();
}

// max_db_connections / max_user_connections span pools: a pool whose
// clients wait while the shared limit is taken by idle servers of another
// pool gets a slot by closing one of those idle servers.
//
// Across workers (pool_size included: every worker's pool of a key shares
// it) the same happens at once rather than at the tick: see slot_wanted and
// give_slot_away. The tick only repeats a want that no worker could serve
// yet, and gives up idle servers that are wanted.
void Worker::balance_shared_limits() {
  const bool many = hub_.size() > 1;
  for (auto& [key, entry] : pools_) {
    pool::Pool& starved = *entry.pool;
    if (!starved.starved_by_shared_limit()) continue;
    if (many && starved.key_limit()) slot_wanted(starved);
    for (auto& [okey, other] : pools_) {
      pool::Pool& donor = *other.pool;
      if (&donor == &starved) continue;
      bool shares = (starved.db_limit() && starved.db_limit() == donor.db_limit() &&
                     starved.db_limit()->full()) ||
                    (starved.user_limit() && starved.user_limit() == donor.user_limit() &&
                     starved.user_limit()->full());
      if (shares && donor.counts().idle > 0 && donor.counts().waiting_server == 0 &&
          donor.close_one_idle("freeing a slot for another pool (shared connection limit)"))
        break;
    }
  }
  if (many) give_idle_slots(nullptr);
}

namespace {
constexpr const char* kSlotGiven = "freeing a slot for another worker's clients (shared connection limit)";
uint64_t worker_bit(size_t index) { return uint64_t(1) << (index % 64); }
// A worker whose own clients wait too gives a slot only to a client that
// has waited longer than its oldest by this much: under an even load every
// worker's clients wait a little, and moving a server costs a login, so
// only a worker left without servers for this long gets one.
constexpr int64_t kGiveMarginNs = 500'000'000;
// A worker none of whose clients wait gives an idle server only to a client
// that has waited this long: under a steady load each worker is often
// without a waiter for a moment while the other's clients wait a moment,
// and moving a server then (a close, a new server login) is pure loss; a
// worker that really lacks servers waits this long more.
constexpr int64_t kIdleGiveNs = 100'000'000;
int64_t since_ns(pool::TimePoint t) {
  return std::max<int64_t>(1, std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count());
}
}  // namespace

void Worker::slot_wanted(pool::Pool& p) {
  const uint64_t mine = worker_bit(index_);
  for (pool::SharedLimit* l : {p.key_limit(), p.db_limit(), p.user_limit()}) {
    if (!l) continue;
    const bool full = l == p.key_limit() ? p.key_total() >= size_t(p.settings().pool_size) : l->full();
    if (!full) continue;
    // Written only when it changes: under load every queued client comes
    // here, and then only reads.
    if (const pool::TimePoint t = p.oldest_wait_since(); t != pool::TimePoint{}) {
      std::atomic<int64_t>& since = l->want_since[index_ % 64];
      if (since.load(std::memory_order_relaxed) != since_ns(t)) since.store(since_ns(t), std::memory_order_relaxed);
    }
    if (l->wanted.load(std::memory_order_relaxed) & mine) continue;
    l->wanted.fetch_or(mine, std::memory_order_relaxed);
    for (Worker* w : all())
      if (w != this) w->post([l](Worker& x) { x.give_idle_slots(l); });
  }
}

// Withdrawn at once, or another worker would close a server for clients
// that no longer wait (another of this worker's pools under a shared
// db/user limit that still waits sets it again).
void Worker::slot_unwanted(pool::Pool& p) {
  const uint64_t mine = worker_bit(index_);
  for (pool::SharedLimit* l : {p.key_limit(), p.db_limit(), p.user_limit()})
    if (l && (l->wanted.load(std::memory_order_relaxed) & mine)) {
      l->wanted.fetch_and(~mine, std::memory_order_relaxed);
      l->want_since[index_ % 64].store(0, std::memory_order_relaxed);
    }
}

bool Worker::give_slot_away(pool::Pool& p, pool::PoolServer* s) {
  const uint64_t mine = worker_bit(index_);
  const pool::TimePoint own = p.oldest_wait_since();
  for (pool::SharedLimit* l : {p.key_limit(), p.db_limit(), p.user_limit()}) {
    if (!l || !(l->wanted.load(std::memory_order_relaxed) & ~mine)) continue;
    if (give_slot(p, l, own == pool::TimePoint{} ? since_ns(now()) - kIdleGiveNs : since_ns(own) - kGiveMarginNs, [&] {
          s->pool_close(kSlotGiven);
          return true;
        }))
      return true;
  }
  return false;
}

void Worker::give_idle_slots(pool::SharedLimit* only) {
  const uint64_t mine = worker_bit(index_);
  for (auto& [key, entry] : pools_) {
    pool::Pool& donor = *entry.pool;
    if (key.health) continue;
    for (pool::SharedLimit* l : {donor.key_limit(), donor.db_limit(), donor.user_limit()}) {
      if (!l || (only && l != only)) continue;
      auto c = donor.counts();
      if (c.idle == 0 || c.waiting_server > 0 || c.waiting_welcome > 0) break;
      if (!(l->wanted.load(std::memory_order_relaxed) & ~mine)) continue;
      give_slot(donor, l, since_ns(now()) - kIdleGiveNs, [&] { return donor.close_one_idle(kSlotGiven); });
    }
  }
}

// The want is taken first (two workers never both give for one), its
// worker granted the slot of the server close() takes out of `p` (the
// slot is never free in between, so no other worker can take it and no
// count goes above the limit), and told to open a server with it. If
// close() closes nothing, the want stands again.
template <class Close>
bool Worker::give_slot(pool::Pool& p, pool::SharedLimit* l, int64_t before_ns, Close close) {
  const int j = take_want(l, before_ns);
  if (j < 0) return false;
  p.grant_slot_on_close(l, size_t(j));
  const bool closed = close();
  p.grant_slot_on_close(nullptr);
  if (!closed) {
    l->wanted.fetch_or(worker_bit(size_t(j)), std::memory_order_relaxed);
    return false;
  }
  open_on(size_t(j), l);
  return true;
}

// Clears the want of `l` of the other worker whose client has waited
// longest, if it waits since before `before_ns` (0: any): its index, or -1.
int Worker::take_want(pool::SharedLimit* l, int64_t before_ns) {
  const uint64_t mine = worker_bit(index_);
  for (;;) {
    uint64_t w = l->wanted.load(std::memory_order_relaxed);
    const uint64_t others = w & ~mine;
    if (!others) return -1;
    int best = -1;
    int64_t best_since = 0;
    for (int j = 0; j < 64; ++j) {
      if (!(others & (uint64_t(1) << j))) continue;
      int64_t since = l->want_since[size_t(j)].load(std::memory_order_relaxed);
      if (since == 0) since = 1;  // wanting, time not known yet: oldest
      if (best < 0 || since < best_since) {
        best = j;
        best_since = since;
      }
    }
    if (before_ns > 0 && best_since >= before_ns) return -1;
    const uint64_t pick = uint64_t(1) << best;
    if (l->wanted.compare_exchange_weak(w, w & ~pick, std::memory_order_relaxed)) {
      l->want_since[size_t(best)].store(0, std::memory_order_relaxed);
      return best;
    }
  }
}

// A slot of `l` was just granted to worker `j` (SharedLimit::grant): it
// opens a server with it now, and gives back what its waiters did not use.
void Worker::open_on(size_t j, pool::SharedLimit* l) {
  const bool sent = hub_.worker(j).post([l](Worker& x) {
    for (auto& [key, entry] : x.pools_) {
      pool::Pool& p = *entry.pool;
      if (p.key_limit() == l || p.db_limit() == l || p.user_limit() == l) p.open_for_waiters();
    }
    l->drop_grants(x.index_);
  });
  if (!sent) l->drop_grants(j);  // stopped
}

// server_fast_close: a session client whose server is due to be replaced
// goes with it once nothing runs and no transaction is open (running
// transactions are never cut). The client is told, so it reconnects.
void Worker::close_outdated_sessions() {
  std::vector<ClientConnection*> doomed;
  for (ClientConnection* c = clients_.front(); c; c = decltype(clients_)::next(c)) {
    ServerConnection* s = c->server();
    if (c->state() != ClientConnection::State::linked || !s || c->mode() != conf::PoolMode::session ||
        s->linked_client() != c || s->busy() || s->tx_status() != 'I')
      continue;
    if (const pool::Pool* p = s->pool(); p && p->outdated(s)) doomed.push_back(c);
  }
  for (ClientConnection* c : doomed) {
    auto e = proto::fatal_error(proto::sqlstate::kAdminShutdown,
                                "terminating connection: the server connection of this session was replaced "
                                "(server_fast_close after RECONNECT or a configuration change)");
    c->close(CloseReason::server_outdated, &e);
  }
}

// client_idle_timeout, idle_transaction_timeout, query_timeout and
// transaction_timeout, with the messages PgBouncer users know.
void Worker::check_client_timeouts() {
  const conf::Config& cfg = *config_;
  uint64_t idle_ms = uint64_t(cfg.client_idle_timeout.count());
  uint64_t idle_tx_ms = uint64_t(cfg.idle_transaction_timeout.count());
  uint64_t query_ms = uint64_t(cfg.query_timeout.count());
  uint64_t xact_ns = uint64_t(cfg.transaction_timeout.count()) * 1000000u;
  // [users.NAME] timeouts override these for clients logged in as NAME.
  const bool per_user = std::any_of(cfg.users.begin(), cfg.users.end(),
                                    [](const auto& u) { return u.second.has_timeouts(); });
  if (!idle_ms && !idle_tx_ms && !query_ms && !xact_ns && !per_user) return;
  const uint64_t base_idle_ms = idle_ms, base_idle_tx_ms = idle_tx_ms, base_query_ms = query_ms,
                 base_xact_ns = xact_ns;
  uint64_t now_ms = uv_now(&loop_);
  uint64_t now_ns = uv_hrtime();
  std::vector<std::pair<ClientConnection*, const char*>> doomed;
  for (ClientConnection* c = clients_.front(); c; c = decltype(clients_)::next(c)) {
    if (per_user) {
      const conf::UserConfig* u = c->user().empty() ? nullptr : cfg.find_user(c->user());
      auto ms = [&](const std::optional<conf::Duration>& d, uint64_t base) {
        return d ? uint64_t(d->count()) : base;
      };
      idle_ms = u ? ms(u->client_idle_timeout, base_idle_ms) : base_idle_ms;
      idle_tx_ms = u ? ms(u->idle_transaction_timeout, base_idle_tx_ms) : base_idle_tx_ms;
      query_ms = u ? ms(u->query_timeout, base_query_ms) : base_query_ms;
      xact_ns = u ? ms(u->transaction_timeout, base_xact_ns / 1000000u) * 1000000u : base_xact_ns;
    }
    auto st = c->state();
    ServerConnection* s = c->server();
    bool linked = st == ClientConnection::State::linked && s;
    // Pipelined behind another client's request: its timeouts start when
    // its own request runs. The request ahead of it, if its client left,
    // still has query_timeout.
    if (linked && s->linked_client() != c) {
      if (query_ms) s->check_orphan_timeout(now_ms, query_ms);
      continue;
    }
    if (linked && xact_ns && s->xact_start_ns() && now_ns - s->xact_start_ns() >= xact_ns) {
      doomed.emplace_back(c, "transaction_timeout");
      continue;
    }
    if (linked && s->busy()) {
      if (query_ms && now_ms - s->busy_since_ms() >= query_ms) doomed.emplace_back(c, "query_timeout");
      continue;
    }
    if (linked && s->tx_status() != 'I') {
      if (idle_tx_ms && now_ms - std::max(s->ready_since_ms(), c->last_active_ms()) >= idle_tx_ms)
        doomed.emplace_back(c, "idle_transaction_timeout");
      continue;
    }
    if ((st == ClientConnection::State::idle || linked) && idle_ms &&
        now_ms - c->last_active_ms() >= idle_ms)
      doomed.emplace_back(c, "client_idle_timeout");
  }
  for (auto& [c, what] : doomed) {
    auto e = proto::fatal_error(proto::sqlstate::kProtocolViolation, what);
    c->close(CloseReason::timeout, &e);  // a running query is cancelled there
  }
}

pool::PoolSettings Worker::settings_for(const PoolKey& key, const conf::DatabaseConfig& db) const {
  const conf::Config& cfg = *config_;
  pool::PoolSettings s;
  // [users.NAME] pool_size / reserve_pool_size of the server user come first.
  const conf::UserConfig* uc = cfg.users.empty() ? nullptr : cfg.find_user(key.user);
  s.pool_size = uc && uc->pool_size ? *uc->pool_size : cfg.effective_pool_size(db);
  s.min_pool_size = std::min(db.min_pool_size.value_or(cfg.min_pool_size), s.pool_size);
  // pool_size and reserve_pool_size bound every worker's pools of a key
  // together (Hub::key_limit); min_pool_size is shared out among them.
  if (const size_t n = hub_.size(); n > 1)
    s.min_pool_size = int(size_t(s.min_pool_size) / n + (index_ < size_t(s.min_pool_size) % n ? 1 : 0));
  s.reserve_pool_size =
      uc && uc->reserve_pool_size ? *uc->reserve_pool_size : db.reserve_pool_size.value_or(cfg.reserve_pool_size);
  // Client pools only: the waiters of the others are not clients.
  s.server_pipelining = !key.auth && !key.health && db.server_pipelining.value_or(cfg.server_pipelining);
  s.reserve_pool_timeout = cfg.reserve_pool_timeout;
  s.query_wait_timeout = db.query_wait_timeout.value_or(cfg.query_wait_timeout);
  s.query_wait_notify = (key.auth || key.health) ? conf::Duration{0} : cfg.query_wait_notify;
  s.server_connect_timeout = cfg.server_connect_timeout;
  s.server_login_retry = cfg.server_login_retry;
  s.server_idle_timeout = cfg.server_idle_timeout;
  s.server_lifetime = db.server_lifetime.value_or(cfg.server_lifetime);
  s.round_robin = cfg.server_round_robin;
  if (key.auth) {
    // Lookups are short: two connections serve a login storm (answers are
    // cached and shared), and a lookup gives up with the client's login.
    s.pool_size = 2;
    s.min_pool_size = 0;
    s.reserve_pool_size = 0;
    s.query_wait_timeout = cfg.client_login_timeout;
    s.server_login_retry = std::chrono::seconds(1);
  } else if (key.health) {
    // One connection, given up on quickly, retried at the next check.
    s.pool_size = 1;
    s.min_pool_size = 0;
    s.reserve_pool_size = 0;
    s.query_wait_timeout = db.health_check_timeout;
    s.server_connect_timeout = db.health_check_timeout;
    s.server_login_retry = db.health_check_interval;
  }
  return s;
}

void Worker::follow_entry(PoolEntry& e, const PoolKey& key, const conf::DatabaseConfig& db) {
  PoolEntry next;
  set_target(next, key, db);
  const bool new_parameters = db.parameters != e.db->parameters;
  // The settings whose value changed (names are case-insensitive), while
  // e.db still points at the old entry.
  std::vector<std::string> changed;
  if (new_parameters)
    for (const pool::Params* list : {&e.db->parameters, &db.parameters})
      for (const auto& [k, v] : *list) {
        const std::string* before = find_param(e.db->parameters, k);
        const std::string* after = find_param(db.parameters, k);
        if (!before || !after || *before != *after) changed.push_back(k);
      }
  const bool moved = db.name != e.db->name || next.host != e.host || next.port != e.port ||
                     next.password != e.password || db.dbname != e.db->dbname ||
                     db.connect_query != e.db->connect_query || new_parameters;
  e.host = next.host;
  e.port = next.port;
  e.password = next.password;
  e.db = &db;
  e.owner = config_;
  e.retired = false;
  e.pool->update_settings(settings_for(key, db));
  if (!changed.empty() && !key.auth && !key.health && e.pool->welcome_ready()) {
    // Clients logged in before keep the values they were told: each changed
    // setting the servers report becomes the client's own (only those, so
    // idle clients stay small).
    for (ClientConnection* c = clients_.front(); c; c = decltype(clients_)::next(c)) {
      if (c->home_pool() != e.pool.get()) continue;
      for (const std::string& name : changed)
        if (const std::string* told = find_param(e.pool->welcome(), name)) c->keep_told_value(name, *told);
    }
  }
  if (moved) {
    spdlog::info("pool {}/{} now connects to {}:{} as configured; its server connections are replaced",
                 key.database, key.user, e.host, e.port);
    // New startup parameters: new clients get the new servers' values.
    e.pool->reconnect(new_parameters && !key.auth && !key.health);
  }
}

void Worker::set_target(PoolEntry& e, const PoolKey& key, const conf::DatabaseConfig& db) const {
  e.host = db.host;
  e.port = db.port;
  if (key.backend > 0 && key.backend <= db.replicas.size()) {
    e.host = db.replicas[key.backend - 1].host;
    e.port = db.replicas[key.backend - 1].port;
  }
  e.password.reset();
  if (key.auth) {
    if (db.user && *db.user == key.user) e.password = db.password;  // else the userlist's
  } else if (!key.health) e.password = db.password;
  else if (db.health_check_password) e.password = db.health_check_password;
  else if (db.user && *db.user == key.user) e.password = db.password;
}

pool::Pool& Worker::pool_for(const PoolKey& key, const conf::DatabaseConfig& db,
                             const std::shared_ptr<const conf::Config>& owner) {
  auto it = pools_.find(key);
  if (it != pools_.end()) {
    PoolEntry& e = it->second;
    // A retired pool wanted again under the current config (its key came
    // back, e.g. a database re-added) follows the new entry.
    if (e.retired && (!owner || owner == config_) && e.db != &db) follow_entry(e, key, db);
    return *e.pool;
  }
  const conf::Config& cfg = *config_;
  pool::PoolSettings s = settings_for(key, db);
  PoolEntry e;
  e.owner = owner ? owner : config_;
  e.db = &db;
  set_target(e, key, db);
  if (e.owner != config_) {
    // A client of a database a reload removed or changed: the pool serves
    // it and goes when it is unused.
    e.retired = true;
    retired_pools_ = true;
  }
  if (key.health) {
    e.pool = std::make_unique<pool::Pool>(key.database, key.user, s, *this);
  } else {
    auto& dbl = hub_.db_limit(key.database);
    dbl.max = cfg.effective_max_db_connections(&db);
    auto& ul = hub_.user_limit(key.user);
    ul.max = cfg.effective_max_user_connections(key.user);
    // Every worker's pool of this key counts against one pool_size.
    pool::SharedLimit* kl = nullptr;
    if (hub_.size() > 1)
      kl = &hub_.key_limit(key.database + '\0' + key.user + '\0' + std::to_string(key.backend));
    e.pool = std::make_unique<pool::Pool>(key.database, key.user, s, *this, &dbl, &ul, kl);
  }
  e.pool->set_backend(key.backend, key.health, key.auth);
  e.pool->set_worker(index_);
  if (key.health)
    spdlog::debug("health check pool {}/{} for {}:{} created", key.database, key.user, e.host, e.port);
  else if (db.routed())
    spdlog::info("pool {}/{} on {}:{} created (pool_size {})", key.database, key.user, e.host,
                 e.port, s.pool_size);
  else
    spdlog::info("pool {}/{} created (pool_size {})", key.database, key.user, s.pool_size);
  return *pools_.emplace(key, std::move(e)).first->second.pool;
}

bool Worker::open_server(pool::Pool& pool, proto::ErrorFields& error) {
  auto it = pools_.find(
      PoolKey{pool.database(), pool.user(), pool.backend(), pool.health_check(), pool.auth_lookup()});
  if (it == pools_.end()) {
    error.severity = "FATAL";
    error.sqlstate = proto::sqlstate::kInternalError;
    error.message = "pool has no configuration";
    return false;
  }
  const PoolEntry& entry = it->second;
  const conf::DatabaseConfig& db = *entry.db;
  // The "*" entry's own pools (health checks) are keyed "*" so they cannot
  // share a key with an explicit entry's; they connect to "postgres".
  std::string dbname = !db.dbname.empty() ? db.dbname : pool.database() == "*" ? "postgres" : pool.database();
  auto* s = new ServerConnection(*this, pool, db, pool.user(), dbname, entry.host, entry.port,
                                 entry.password);
  servers_.push_back(s);
  pool.add_connecting(s);
  if (!s->start(error)) {
    pool.remove(s);
    s->close("cannot start");
    return false;
  }
  return true;
}

bool Worker::try_count_client(ClientConnection*) {
  const int64_t max = config_->max_client_conn;
  int64_t n = hub_.clients.load(std::memory_order_relaxed);
  do {
    if (n >= max) return false;
  } while (!hub_.clients.compare_exchange_weak(n, n + 1, std::memory_order_relaxed));
  return true;
}
void Worker::uncount_client(ClientConnection*) { hub_.clients.fetch_sub(1, std::memory_order_relaxed); }

void Worker::client_started(ClientConnection* c) {
  clients_.push_back(c);
  logging_in_.push_back(c);
  hub_.logins.fetch_add(1, std::memory_order_relaxed);
}

void Worker::end_login(ClientConnection* c) {
  if (!logging_in_.contains(c)) return;
  logging_in_.remove(c);
  hub_.logins.fetch_sub(1, std::memory_order_relaxed);
}

void Worker::client_logged_in(ClientConnection* c) { end_login(c); }

void Worker::close_later(ClientConnection* c, pool::TimePoint when, CloseReason reason,
                         proto::ErrorFields error) {
  delayed_closes_.push_back({c, when, reason, std::move(error)});
}

void Worker::run_delayed_closes() {
  const auto t = now();
  std::vector<DelayedClose> due;
  for (auto it = delayed_closes_.begin(); it != delayed_closes_.end();) {
    if (it->when <= t) {
      due.push_back(std::move(*it));
      it = delayed_closes_.erase(it);
    } else {
      ++it;
    }
  }
  for (auto& d : due) d.client->close(d.reason, &d.error);
}

void Worker::client_finished(ClientConnection* c) {
  if (!delayed_closes_.empty())
    delayed_closes_.erase(std::remove_if(delayed_closes_.begin(), delayed_closes_.end(),
                                         [&](const DelayedClose& d) { return d.client == c; }),
                          delayed_closes_.end());
  end_login(c);
  if (clients_.contains(c)) clients_.remove(c);
  load.fetch_sub(1, std::memory_order_relaxed);
  if (shutting_down_) maybe_finish_shutdown();
}

void Worker::server_finished(ServerConnection* s) {
  if (servers_.contains(s)) servers_.remove(s);
  for (CancelSender* c : cancels_)
    if (c->server == s) c->server = nullptr;
  if (shutting_down_) maybe_finish_shutdown();
}

void Worker::register_cancel_key(ClientConnection* c, uint32_t& pid, uint32_t& key) {
  // pid % workers names the worker, so a cancel request arriving on any
  // worker finds its client's.
  const uint32_t n = uint32_t(hub_.size());
  do {
    pid = auth::random_u32() & 0x7fffffffu;
    pid = pid - pid % n + uint32_t(index_);
  } while (pid == 0 || pid > 0x7fffffffu || cancel_keys_.count(pid));
  key = auth::random_u32();
  cancel_keys_[pid] = {c, key};
}

void Worker::unregister_cancel_key(uint32_t pid) { cancel_keys_.erase(pid); }

void Worker::handle_cancel(uint32_t pid, uint32_t key) {
  if (const size_t owner = pid % hub_.size(); owner != index_) {
    hub_.worker(owner).post([pid, key](Worker& w) { w.handle_cancel(pid, key); });
    return;
  }
  auto it = cancel_keys_.find(pid);
  uint32_t expected = it == cancel_keys_.end() ? ~key : it->second.second;
  std::string_view a(reinterpret_cast<const char*>(&expected), 4);
  std::string_view b(reinterpret_cast<const char*>(&key), 4);
  if (it == cancel_keys_.end() || !auth::constant_time_equal(a, b)) {
    spdlog::info("cancel request with an unknown key ignored");
    return;
  }
  ClientConnection* c = it->second.first;
  ServerConnection* s = c->server();
  if (s && s->next_client() == c) {
    // Pipelined behind another client's request: the cancel goes when this
    // client's request runs (sent now, it would hit the other one's).
    spdlog::info("C-{} cancel request: sent when its pipelined request runs on {}", c->id(), s->name());
    s->cancel_when_next_runs();
    return;
  }
  // Only a server linked to this very client receives the cancel.
  if (!s || s->linked_client() != c || s->state() != ServerConnection::State::linked) {
    spdlog::info("C-{} cancel request: no query running", c->id());
    return;
  }
  spdlog::info("C-{} cancel request forwarded to {}", c->id(), s->name());
  cancel_server_query(s);
}

void Worker::cancel_server_query(ServerConnection* s) {
  cancels_.push_back(new CancelSender(*this, s));
}

void Worker::remember_scram_keys(const std::string& database, const std::string& user,
                                 const auth::ScramKeys& keys) {
  scram_keys_[{database, user}] = keys;
}

const auth::ScramKeys* Worker::scram_keys(const std::string& database, const std::string& user) const {
  auto it = scram_keys_.find({database, user});
  return it == scram_keys_.end() ? nullptr : &it->second;
}

const auth::ScramVerifier& Worker::verifier_for_plain(const std::string& user,
                                                      const std::string& password) {
  const int iterations = config_->scram_iterations;
  auto it = plain_verifiers_.find(user);
  if (it != plain_verifiers_.end() && it->second.first == password && it->second.second.iterations == iterations)
    return it->second.second;
  auto& slot = plain_verifiers_[user];
  slot.first = password;
  slot.second =
      auth::make_scram_verifier(auth::scram_prepare_password(password), auth::derived_salt(user), iterations);
  return slot.second;
}

// ---------------------------------------------------------------------------
// Reload

namespace {

std::string listen_text(const conf::Config& c) {
  std::string out;
  for (const auto& l : c.listen) out += (out.empty() ? "" : ", ") + l.text;
  return out;
}

bool same_log(const conf::LogConfig& a, const conf::LogConfig& b) {
  return a.level == b.level && a.file == b.file;
}

}  // namespace

bool Worker::reload(std::string* error) {
  auto refuse = [&](const std::string& why) {
    spdlog::error("reload refused, the running configuration stays in force: {}", why);
    if (error) *error = why;
    return false;
  };
  std::lock_guard lk(hub_.config_mu);
  const conf::Config& now = *hub_.config;  // the latest, maybe not yet in force here
  auto loaded = conf::load_file(now.source);
  if (!loaded.config) return refuse(loaded.error);
  // Certificates and keys are read again; connections keep the ones they
  // started with.
  ConfigFiles files;
  std::string files_error;
  if (!load_config_files(*loaded.config, files, files_error)) return refuse(files_error);
  auto cfg = std::make_shared<conf::Config>(*loaded.config);
  // Bound sockets and threads stay as they are until a restart.
  if (listen_text(*cfg) != listen_text(now))
    spdlog::warn("reload: [pgmux] listen changed ({} -> {}): takes effect after a restart",
                 listen_text(now), listen_text(*cfg));
  auto keep_running = [](const char* key, auto& loaded, const auto& running) {
    if (loaded != running)
      spdlog::warn("reload: [pgmux] {} changed ({} -> {}): takes effect after a restart", key, running, loaded);
    loaded = running;
  };
  keep_running("workers", cfg->workers, now.workers);
  keep_running("so_reuseport", cfg->so_reuseport, now.so_reuseport);
  keep_running("listen_backlog", cfg->listen_backlog, now.listen_backlog);
  if (cfg->tcp_defer_accept != now.tcp_defer_accept)
    spdlog::warn("reload: [pgmux] tcp_defer_accept changed ({} -> {}): takes effect after a restart",
                 conf::format_duration(now.tcp_defer_accept), conf::format_duration(cfg->tcp_defer_accept));
  cfg->tcp_defer_accept = now.tcp_defer_accept;
  keep_running("unix_socket_mode", cfg->unix_socket_mode, now.unix_socket_mode);
  keep_running("unix_socket_group", cfg->unix_socket_group, now.unix_socket_group);
  if (cfg->admin.metrics_listen != now.admin.metrics_listen)
    spdlog::warn("reload: [admin] metrics_listen changed: takes effect after a restart");
  cfg->listen = now.listen;
  cfg->admin.metrics_listen = now.admin.metrics_listen;
  // The log file is reopened on every reload (logrotate's copy-less
  // rotation needs that).
  if (!cfg->log.file.empty() || !same_log(cfg->log, now.log)) {
    std::string log_error;
    if (!setup_logging(cfg->log, log_error)) return refuse(log_error);
  }
  spdlog::info("reload: {} applied ({} databases{})", cfg->source, cfg->databases.size(),
               files.userlist ? ", " + std::to_string(files.userlist->users.size()) + " users" : "");
  publish_config(std::move(cfg), std::move(files));
  return true;
}

bool Worker::set_setting(std::string_view key, std::string_view value, std::string& error) {
  std::lock_guard lk(hub_.config_mu);
  auto r = conf::apply_setting(*hub_.config, key, value);
  if (!r.config) {
    error = r.error;
    return false;
  }
  spdlog::info("admin console: SET {} = {}", key, value);
  publish_config(r.config, hub_.files);
  return true;
}

// Under hub_.config_mu.
void Worker::publish_config(std::shared_ptr<const conf::Config> cfg, ConfigFiles files) {
  const uint64_t version = ++hub_.config_version;
  hub_.config = cfg;
  hub_.files = files;
  hub_.broadcast(this, [version, cfg, files](Worker& w) { w.take_config(version, cfg, files); });
}

void Worker::take_config(uint64_t version, std::shared_ptr<const conf::Config> cfg, ConfigFiles files) {
  if (version <= config_version_) return;  // a newer one came first
  config_version_ = version;
  apply_config(std::move(cfg), std::move(files));
}

void Worker::apply_config(std::shared_ptr<const conf::Config> cfg, ConfigFiles files) {
  std::shared_ptr<const conf::Config> old = config_;
  config_ = std::move(cfg);
  files_ = std::move(files);
  // Verifiers made from plain passwords stay while the password does (each
  // costs a PBKDF2 on this thread); those of users gone or changed go.
  std::erase_if(plain_verifiers_, [&](const auto& kv) {
    const auth::Secret* s = files_.userlist ? files_.userlist->find(kv.first) : nullptr;
    return !s || s->kind != auth::SecretKind::plain || s->text != kv.second.first;
  });
  const conf::Config& c = *config_;

  // Routing: a database whose backends are the same keeps what its checks
  // learned and takes the new policy; otherwise it starts afresh.
  for (auto it = routes_.begin(); it != routes_.end();) {
    const conf::DatabaseConfig* db = c.find_database(it->first);
    RouteState& r = *it->second;
    const bool same_checker = db && db->name == it->first && db->routed() &&
                              *db->check_user() == *r.db->check_user() &&
                              db->health_check_password == r.db->health_check_password;
    if (same_checker && r.router.reconfigure(*db)) {
      r.db = db;
      r.owner = config_;
      ++it;
      continue;
    }
    spdlog::info("reload: database {}: backends or checker changed, routing starts afresh", it->first);
    auto doomed = it++;
    retire_route(doomed);
  }
  for (const auto& [name, db] : c.databases)
    if (db.routed() && !routes_.count(name)) start_route(name, db);

  // Pools: follow their entry, or retire with it.
  for (auto& [key, e] : pools_) {
    // The entry a new client of the pool's database would get (the health
    // checker's pool belongs to its entry by name).
    const conf::DatabaseConfig* db = nullptr;
    if (!key.health || key.auth) db = c.find_database(key.database);
    else if (auto it = c.databases.find(e.db->name); it != c.databases.end()) db = &it->second;
    bool keep = db != nullptr;
    if (keep && key.backend > db->replicas.size()) keep = false;     // a replica went
    if (keep && key.auth) keep = c.auth_lookup_runs_as(key.user);
    else if (keep && key.health) keep = db->routed() && *db->check_user() == key.user;
    else if (keep && db->user) keep = *db->user == key.user;          // forced server user
    else if (keep && e.db->user && *e.db->user == key.user) keep = false;  // was forced, is not
    if (!keep) {
      if (!e.retired)
        spdlog::info("reload: pool {}/{} retired: it serves its clients until they leave",
                     key.database, key.user);
      e.retired = true;
      retired_pools_ = true;
      continue;
    }
    follow_entry(e, key, *db);
  }
  hub_.for_each_limit([&](Hub::LimitKind kind, const std::string& name, pool::SharedLimit& limit) {
    if (kind == Hub::LimitKind::db) limit.max = c.effective_max_db_connections(c.find_database(name));
    else if (kind == Hub::LimitKind::user) limit.max = c.effective_max_user_connections(name);
  });
  for (const auto& [name, db] : c.databases)
    if (index_ == 0 && !old->databases.count(name)) spdlog::info("reload: database {} added", name);
  for (const auto& [name, db] : old->databases)
    if (index_ == 0 && !c.databases.count(name)) spdlog::info("reload: database {} removed: new logins refused", name);
  drop_retired_pools();
}

// A retired pool goes once no client can use it: none linked, waiting or
// logged in to it (clients of a routed database use every backend's pool).
void Worker::drop_retired_pools() {
  if (!retired_pools_) return;
  retired_pools_ = false;
  for (auto it = pools_.begin(); it != pools_.end();) {
    PoolEntry& e = it->second;
    if (!e.retired) {
      ++it;
      continue;
    }
    const PoolKey& key = it->first;
    bool used = false;
    for (ClientConnection* cl = clients_.front(); cl && !used; cl = decltype(clients_)::next(cl)) {
      const pool::Pool* home = cl->home_pool();
      used = home == e.pool.get() ||
             (home && cl->routed() && home->database() == key.database && home->user() == key.user);
    }
    pool::PoolCounts n = e.pool->counts();
    if (used || n.waiting_server || n.waiting_welcome) {
      retired_pools_ = true;
      ++it;
      continue;
    }
    e.pool->close_idle("its database entry was removed or changed by a reload");
    if (e.pool->counts().total_servers() > 0) {
      retired_pools_ = true;  // connecting or resetting: later
      ++it;
      continue;
    }
    spdlog::info("pool {}/{} closed: unused since a reload retired it", key.database, key.user);
    if (!key.health) dropped_totals_[key.database].add(PoolTotals(e.pool->stats));  // the stats line's totals only grow
    it = pools_.erase(it);
  }
}

// autodb_idle_timeout: a pool of a database name the "*" entry serves goes
// once no client of that name (logged in on any worker, Hub::count_login)
// has used it for that long: its idle servers are closed and the pool
// dropped, so a pooler serving many databases does not keep a pool for
// every name it ever saw.
void Worker::drop_idle_auto_pools(uint64_t now_ms) {
  const uint64_t configured = uint64_t(config_->autodb_idle_timeout.count());
  // auth_query's pool for a name the "*" entry serves is made before the
  // client has logged in: names that lead nowhere (no server logged in) go
  // after a short while whatever autodb_idle_timeout says, or unauthenticated
  // clients could make pgmux keep a pool per random name.
  constexpr uint64_t kEmptyLookupPoolMs = 10000;
  std::vector<std::string> dropped;
  for (auto it = pools_.begin(); it != pools_.end();) {
    const PoolKey& key = it->first;
    PoolEntry& e = it->second;
    if (e.retired || (key.health && !key.auth) || !e.db || e.db->name != "*") {
      ++it;
      continue;
    }
    const pool::PoolCounts n = e.pool->counts();
    uint64_t limit = configured;
    if (key.auth && n.total_servers() == 0) limit = limit ? std::min(limit, kEmptyLookupPoolMs) : kEmptyLookupPoolMs;
    if (!limit || n.waiting_server || n.waiting_welcome || n.active || n.connecting ||
        hub_.clients_of_database(key.database) > 0) {
      e.unused_since_ms = 0;
      ++it;
      continue;
    }
    if (!e.unused_since_ms) e.unused_since_ms = now_ms;
    if (now_ms - e.unused_since_ms < limit) {
      ++it;
      continue;
    }
    // A client on its way out still points at its pool until its socket
    // has closed (SHOW CLIENTS reads it): only a pool nobody points at goes.
    bool referenced = false;
    for (ClientConnection* c = clients_.front(); c && !referenced; c = decltype(clients_)::next(c))
      referenced = c->home_pool() == e.pool.get();
    if (referenced) {
      ++it;
      continue;
    }
    e.pool->close_idle("autodb_idle_timeout: no client of the database for that long");
    if (e.pool->counts().total_servers() > 0) {  // resetting: next time
      ++it;
      continue;
    }
    if (key.auth) {
      spdlog::info("auth query pool {}/{} dropped: unused", key.database, key.user);
    } else {
      spdlog::info("pool {}/{} dropped: no client for autodb_idle_timeout", key.database, key.user);
      dropped_totals_[key.database].add(PoolTotals(e.pool->stats));  // the stats line's totals only grow
    }
    dropped.push_back(key.database);
    it = pools_.erase(it);
  }
  // Secrets kept for server logins of a name no pool serves any more go too
  // (random "*" names must not grow them).
  for (const std::string& name : dropped) {
    const bool still = std::any_of(pools_.begin(), pools_.end(), [&](const auto& kv) { return kv.first.database == name; });
    if (still) continue;
    auth_query_->forget_database(name);
    std::erase_if(scram_keys_, [&](const auto& kv) { return kv.first.first == name; });
  }
}

// ---------------------------------------------------------------------------
// Admin console commands

void Worker::pause(const std::string& db) {
  if (db.empty()) paused_all_ = true;
  else paused_dbs_.insert(db);
  if (index_ == 0)  // every worker runs it; one line says so
    spdlog::info("PAUSE {}: new transactions wait until RESUME", db.empty() ? "(all)" : db);
}

void Worker::resume(const std::string& db) {
  if (db.empty()) {
    paused_all_ = false;
    paused_dbs_.clear();
  } else {
    paused_dbs_.erase(db);
  }
  if (index_ == 0)  // every worker runs it; one line says so
    spdlog::info("RESUME {}", db.empty() ? "(all)" : db);
  std::vector<ClientConnection*> go;
  for (ClientConnection* c : parked_)
    if (!is_paused(c->database())) go.push_back(c);
  for (ClientConnection* c : go) {
    unpark(c);
    c->resume_after_pause();
  }
}

void Worker::maybe_log_stats(pool::TimePoint now) {
  const conf::Duration period = config_->log.stats_period;
  if (period.count() == 0) {
    stats_primed_ = false;
    stats_last_.clear();
    return;
  }
  if (stats_primed_ && now - stats_at_ < period) return;
  hub_.read_all(this, [&] {
    log_stats(*this, stats_last_, std::chrono::duration<double>(now - stats_at_).count(), stats_primed_);
  });
  stats_at_ = now;
  stats_primed_ = true;
}

void Worker::invalidate_plans(const std::string& dbname, const std::string& seen_by) {
  // Every worker: a client's re-prepare on another worker must not land on
  // that worker's copy from before the change either.
  hub_.broadcast(this, [](Worker& w) { w.prepared_.retire_all(); });
  spdlog::info("{}: a prepared statement's result type changed on database \"{}\" (cached plan must not change "
               "result type); statements prepared from now on get new server names",
               seen_by, dbname);
}

void Worker::disable(const std::string& db) {
  disabled_dbs_.insert(db);
  if (index_ == 0)  // every worker runs it; one line says so
    spdlog::info("DISABLE {}: new logins are refused until ENABLE", db);
}

void Worker::enable(const std::string& db) {
  disabled_dbs_.erase(db);
  if (index_ == 0)  // every worker runs it; one line says so
    spdlog::info("ENABLE {}", db);
}

void Worker::park(ClientConnection* c) {
  if (std::find(parked_.begin(), parked_.end(), c) == parked_.end()) parked_.push_back(c);
}

void Worker::unpark(ClientConnection* c) {
  parked_.erase(std::remove(parked_.begin(), parked_.end(), c), parked_.end());
}

void Worker::reconnect(const std::string& db) {
  for (auto& [key, entry] : pools_)
    if (!key.health && matches(*entry.db, key, db)) entry.pool->reconnect();
  if (index_ == 0)  // every worker runs it; one line says so
    spdlog::info("RECONNECT {}: server connections are replaced as they are released",
                 db.empty() ? "(all)" : db);
}

void Worker::kill_database(const std::string& db) {
  pause(db);
  auto e = proto::fatal_error(proto::sqlstate::kAdminShutdown, "database \"" + db + "\" killed from the admin console");
  std::vector<ClientConnection*> doomed;
  for (ClientConnection* c = clients_.front(); c; c = decltype(clients_)::next(c)) {
    const conf::DatabaseConfig* entry = config_->find_database(c->database());
    if (c->database() == db || (entry && entry->name == db)) doomed.push_back(c);
  }
  for (ClientConnection* c : doomed) c->close(CloseReason::killed, &e);
  std::vector<ServerConnection*> servers;
  for (ServerConnection* s = servers_.front(); s; s = decltype(servers_)::next(s)) {
    pool::Pool* p = s->pool();
    const conf::DatabaseConfig* entry = p ? config_->find_database(p->database()) : nullptr;
    if (p && !p->health_check() && (p->database() == db || (entry && entry->name == db))) servers.push_back(s);
  }
  for (ServerConnection* s : servers) s->close("KILL from the admin console");
}

bool Worker::kill_client(uint64_t id) {
  for (ClientConnection* c = clients_.front(); c; c = decltype(clients_)::next(c)) {
    if (c->id() != id || c->state() == ClientConnection::State::closing) continue;
    auto e = proto::fatal_error(proto::sqlstate::kAdminShutdown, "terminated from the admin console (KILL_CLIENT)");
    c->close(CloseReason::killed, &e);
    return true;
  }
  return false;
}

void Worker::admin_wait(ClientConnection* c, std::string tag, std::string db) {
  auto pending = std::make_shared<std::atomic<int>>(int(hub_.size() - 1));
  for (Worker* w : all())
    if (w != this && !w->post([pending](Worker&) { pending->fetch_sub(1); }))
      pending->fetch_sub(1);  // stopped: nothing of it to wait for
  admin_waits_.push_back({c, std::move(tag), std::move(db), std::move(pending)});
  check_admin_waits();
}

void Worker::admin_wait_cancel(ClientConnection* c) {
  admin_waits_.erase(std::remove_if(admin_waits_.begin(), admin_waits_.end(),
                                    [&](const AdminWait& w) { return w.client == c; }),
                     admin_waits_.end());
}

bool Worker::admin_wait_ready(const std::string& tag, const std::string& db) const {
  for (const auto& [key, entry] : pools_) {
    if (key.health || !matches(*entry.db, key, db)) continue;
    const pool::Pool& p = *entry.pool;
    if (tag == "PAUSE") {
      auto c = p.counts();
      if (c.active > 0 || c.resetting > 0) return false;
    } else if (p.has_old_servers()) {
      return false;
    }
  }
  return true;
}

void Worker::check_admin_waits() {
  std::vector<AdminWait> done;
  for (auto it = admin_waits_.begin(); it != admin_waits_.end();) {
    // Every other worker has taken the command (PAUSE, RECONNECT) that
    // came before this wait: its inbox is in order.
    bool ready = it->pending->load() == 0;
    if (ready)
      hub_.read_all(this, [&] {
        for (Worker* w : all())
          if (!w->admin_wait_ready(it->tag, it->db)) ready = false;
      });
    if (ready) {
      if (it->tag == "PAUSE")
        hub_.broadcast(this, [db = it->db](Worker& w) {
          for (auto& [key, entry] : w.pools_)
            if (!key.health && w.matches(*entry.db, key, db)) entry.pool->close_idle("PAUSE");
        });
      done.push_back(std::move(*it));
      it = admin_waits_.erase(it);
    } else {
      ++it;
    }
  }
  for (auto& w : done) w.client->admin_done(w.tag);
}

void Worker::shutdown_gracefully(bool wait_for_clients) {
  if (shutting_down_) return;
  shutting_down_ = true;
  wait_for_clients_ = wait_for_clients;
  shutdown_deadline_ = now() + config_->shutdown_timeout;
  if (index_ == 0)  // every worker runs it; one line says so
    spdlog::info("shutting down: no new connections; {}, up to {}",
                 wait_for_clients ? "waiting for clients to disconnect"
                                  : "running transactions finish, idle clients are closed",
                 conf::format_duration(config_->shutdown_timeout));
  for (auto& l : listeners_) l->stop(/*drain=*/true);
  // Routing keeps its last view of the backends while clients drain; the
  // checkers' connections would only hold the shutdown up.
  for (auto& [name, r] : routes_)
    for (auto& c : r->checks) c->stop();
  maybe_finish_shutdown();
}

void Worker::maybe_finish_shutdown() {
  auto e = proto::fatal_error(proto::sqlstate::kAdminShutdown, "pgmux is shutting down");
  if (now() >= shutdown_deadline_) {
    std::vector<ClientConnection*> all;
    for (ClientConnection* c = clients_.front(); c; c = decltype(clients_)::next(c)) all.push_back(c);
    for (ClientConnection* c : all) c->close(CloseReason::shutdown, &e);
  } else if (!wait_for_clients_) {
    // Clients between transactions go, once idle for a moment: one that
    // just logged in (or was accepted from the queue) is about to send its
    // first query, and closing it then would fail that query. Logins in
    // progress finish.
    const uint64_t now_ms = uv_now(&loop_);
    std::vector<ClientConnection*> idle;
    for (ClientConnection* c = clients_.front(); c; c = decltype(clients_)::next(c))
      if (c->state() == ClientConnection::State::idle && now_ms - c->last_active_ms() >= kShutdownIdleGraceMs)
        idle.push_back(c);
    for (ClientConnection* c : idle) c->close(CloseReason::shutdown, &e);
  }
  for (auto& [k, entry] : pools_) entry.pool->close_idle("shutdown");
  bool clients_left = false;
  for (ClientConnection* c = clients_.front(); c; c = decltype(clients_)::next(c))
    if (c->state() != ClientConnection::State::closing) clients_left = true;
  if (!clients_left) shutdown_now();
}

void Worker::shutdown_now() {
  shutting_down_ = true;
  for (auto& [name, r] : routes_)
    for (auto& c : r->checks) c->stop();
  for (auto& l : listeners_) l->stop();
  std::vector<ClientConnection*> all;
  for (ClientConnection* c = clients_.front(); c; c = decltype(clients_)::next(c)) all.push_back(c);
  auto e = proto::fatal_error(proto::sqlstate::kAdminShutdown, "pgmux is shutting down");
  for (ClientConnection* c : all) c->close(CloseReason::shutdown, &e);
  std::vector<ServerConnection*> servers;
  for (ServerConnection* s = servers_.front(); s; s = decltype(servers_)::next(s)) servers.push_back(s);
  for (ServerConnection* s : servers) s->close("shutdown");
  for (CancelSender* c : std::vector<CancelSender*>(cancels_)) c->abandon();
  if (!uv_is_closing(reinterpret_cast<uv_handle_t*>(&tick_timer_)))
    uv_close(reinterpret_cast<uv_handle_t*>(&tick_timer_), nullptr);
  for (uv_handle_t* h : {reinterpret_cast<uv_handle_t*>(&serve_check_),
                         reinterpret_cast<uv_handle_t*>(&serve_idle_)})
    if (!uv_is_closing(h)) uv_close(h, nullptr);
  if (!reported_stop_) {
    reported_stop_ = true;
    hub_.worker_stopped();
  }
}

void Worker::set_tcp_options(Socket& s, const std::string& who) const {
  const conf::Config& c = config();
  TcpOptions k;
  k.on = c.tcp_keepalive;
  k.idle_s = static_cast<int>(std::chrono::duration_cast<std::chrono::seconds>(c.tcp_keepidle).count());
  k.interval_s = static_cast<int>(std::chrono::duration_cast<std::chrono::seconds>(c.tcp_keepintvl).count());
  k.count = c.tcp_keepcnt;
  k.user_timeout_ms = static_cast<int>(c.tcp_user_timeout.count());
  k.buffer_bytes = static_cast<int>(c.tcp_socket_buffer);
  if (const char* refused = s.set_tcp_options(k))
    spdlog::warn("{}: the kernel refused {}: {}", who, refused, std::strerror(errno));
}

}  // namespace pgmux
