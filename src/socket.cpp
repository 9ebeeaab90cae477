#include "src/socket.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pwd.h>
#include <sys/socket.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <new>
#include <vector>

#include "src/tls.hpp"

namespace pgmux {

namespace {
// Per-thread free list: each worker loop reuses its own buffers, no locks.
struct FreeList {
  IoBuffer* head = nullptr;
  size_t free_count = 0;
  size_t outstanding = 0;
  ~FreeList() {
    while (head) {
      IoBuffer* b = head;
      head = b->next_free;
      delete b;
    }
  }
};
thread_local FreeList t_free;
// Buffers kept for reuse per thread (512 KiB). A burst of logins or reads
// borrows more, and gives them back to the system afterwards, so resident
// memory follows the connections actually moving data.
constexpr size_t kMaxFreeBuffers = 32;
}  // namespace

void IoBufferReturn::operator()(IoBuffer* b) const {
  --t_free.outstanding;
  if (t_free.free_count >= kMaxFreeBuffers) {
    delete b;
    return;
  }
  b->next_free = t_free.head;
  t_free.head = b;
  ++t_free.free_count;
}

IoBufferPtr acquire_io_buffer() {
  IoBuffer* b = t_free.head;
  if (b) {
    t_free.head = b->next_free;
    --t_free.free_count;
  } else {
    b = new IoBuffer;
  }
  b->next_free = nullptr;
  ++t_free.outstanding;
  return IoBufferPtr(b);
}

size_t io_buffers_outstanding() { return t_free.outstanding; }
const size_t* io_buffers_outstanding_counter() { return &t_free.outstanding; }

struct Socket::WriteReq {
  uv_write_t req;
  Socket* socket;
  IoBufferPtr buf;
  std::string str;
};

Socket::Socket(uv_loop_t* loop, Kind kind, SocketOwner* owner) : owner_(owner), kind_(kind) {
  std::memset(&h_, 0, sizeof(h_));
  if (kind == Kind::tcp) uv_tcp_init(loop, &h_.tcp);
  else uv_pipe_init(loop, &h_.pipe, 0);
  h_.handle.data = this;
}

// A TLS session over memory BIOs: `in` receives ciphertext read from the
// socket, `out` collects ciphertext OpenSSL wants sent.
struct Socket::Tls {
  std::shared_ptr<const tls::Context> ctx;
  SSL* ssl = nullptr;
  BIO* in = nullptr;
  BIO* out = nullptr;
  bool established = false;
  bool failed = false;
  // Plaintext OpenSSL still holds when the owner stopped reading is
  // delivered from a zero timer after read_start (never from inside it).
  uv_timer_t* resume = nullptr;
  ~Tls() {
    if (ssl) SSL_free(ssl);  // frees both BIOs
    if (resume) {
      resume->data = nullptr;
      uv_close(reinterpret_cast<uv_handle_t*>(resume),
               [](uv_handle_t* h) { delete reinterpret_cast<uv_timer_t*>(h); });
    }
  }
};

Socket::~Socket() {
  // A Socket must be destroyed only after on_closed (or if never used by the
  // loop, which uv requires to be closed too); see close().
  if (reading_buf_) IoBufferReturn{}(reading_buf_);
  delete connect_req_;
}

int Socket::start_tls(std::shared_ptr<const tls::Context> ctx, const std::string& host) {
  auto t = std::make_unique<Tls>();
  t->ssl = SSL_new(ctx->get());
  t->in = BIO_new(BIO_s_mem());
  t->out = BIO_new(BIO_s_mem());
  if (!t->ssl || !t->in || !t->out) {
    if (t->in && !t->ssl) BIO_free(t->in);
    if (t->out && !t->ssl) BIO_free(t->out);
    ERR_clear_error();
    return UV_ENOMEM;
  }
  BIO_set_mem_eof_return(t->in, -1);  // empty = "retry", not EOF
  SSL_set_bio(t->ssl, t->in, t->out);
  t->ctx = std::move(ctx);
  const bool server = t->ctx->server_side();
  tls_ = std::move(t);
  if (server) {
    SSL_set_accept_state(tls_->ssl);
    return 0;
  }
  SSL_set_connect_state(tls_->ssl);
  if (!host.empty() && host[0] != '/') {
    const bool ip = conf::is_ipv4(host) || conf::is_ipv6(host);
    if (!ip) SSL_set_tlsext_host_name(tls_->ssl, host.c_str());
    if (tls_->ctx->mode() == conf::TlsMode::verify_full) {
      X509_VERIFY_PARAM* param = SSL_get0_param(tls_->ssl);
      X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
      if (ip) X509_VERIFY_PARAM_set1_ip_asc(param, host.c_str());
      else X509_VERIFY_PARAM_set1_host(param, host.c_str(), 0);
    }
  }
  tls_handshake();
  return 0;
}

bool Socket::tls_established() const { return tls_ && tls_->established; }

std::string Socket::tls_end_point() const {
  if (!tls_ || !tls_->established) return {};
  if (tls_->ctx->server_side()) return tls_->ctx->end_point();
  X509* cert = SSL_get1_peer_certificate(tls_->ssl);
  std::string h = tls::end_point_hash(cert);
  X509_free(cert);
  return h;
}

bool Socket::tls_peer_verified() const {
  if (!tls_ || !tls_->established) return false;
  X509* cert = SSL_get1_peer_certificate(tls_->ssl);
  const bool ok = cert && SSL_get_verify_result(tls_->ssl) == X509_V_OK;
  X509_free(cert);
  return ok;
}

std::string Socket::tls_peer_common_name() const {
  if (!tls_ || !tls_->established) return {};
  X509* cert = SSL_get1_peer_certificate(tls_->ssl);
  if (!cert) return {};
  std::string cn;
  X509_NAME* name = X509_get_subject_name(cert);
  int i = X509_NAME_get_index_by_NID(name, NID_commonName, -1);
  if (i >= 0) {
    ASN1_STRING* data = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, i));
    cn.assign(reinterpret_cast<const char*>(ASN1_STRING_get0_data(data)), size_t(ASN1_STRING_length(data)));
    // An embedded NUL would let "admin\0.evil" pass as "admin".
    if (cn.find('\0') != std::string::npos) cn.clear();
  }
  X509_free(cert);
  return cn;
}

std::string Socket::tls_description() const {
  if (!tls_ || !tls_->established) return {};
  return std::string(SSL_get_version(tls_->ssl)) + "/" + SSL_get_cipher_name(tls_->ssl);
}

void Socket::tls_input(const uint8_t* data, size_t n) {
  if (tls_->failed) return;
  if (BIO_write(tls_->in, data, int(n)) != int(n)) {
    tls_fail();
    return;
  }
  if (!tls_->established) {
    tls_handshake();
    if (!tls_ || !tls_->established || closing_) return;
  }
  tls_deliver();
}

void Socket::tls_handshake() {
  ERR_clear_error();
  int r = SSL_do_handshake(tls_->ssl);
  if (tls_flush() != 0) return;
  if (r == 1) {
    tls_->established = true;
    owner_->on_tls_handshake(*this, true, {});
    return;
  }
  int e = SSL_get_error(tls_->ssl, r);
  if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return;
  std::string why = tls::last_error("handshake failed");
  long vr = SSL_get_verify_result(tls_->ssl);
  if (vr != X509_V_OK) why = std::string("certificate verification failed: ") + X509_verify_cert_error_string(vr);
  tls_->failed = true;
  owner_->on_tls_handshake(*this, false, why);
}

// Decrypts what OpenSSL holds and hands it to the owner, while it reads.
void Socket::tls_deliver() {
  while (tls_ && !tls_->failed && reading_ && !closing_) {
    IoBufferPtr buf = acquire_io_buffer();
    ERR_clear_error();
    int r = SSL_read(tls_->ssl, buf->data, int(IoBuffer::kSize));
    if (r > 0) {
      owner_->on_read(*this, std::move(buf), size_t(r));
      continue;
    }
    int e = SSL_get_error(tls_->ssl, r);
    if (e == SSL_ERROR_WANT_READ) break;
    if (e == SSL_ERROR_ZERO_RETURN) {  // close_notify
      read_stop();
      owner_->on_read_end(*this, UV_EOF);
      return;
    }
    tls_fail();
    return;
  }
  if (tls_ && !tls_->failed && !closing_) tls_flush();  // e.g. TLS 1.3 key updates
}

void Socket::tls_schedule_deliver() {
  if (!tls_->established || (SSL_pending(tls_->ssl) == 0 && BIO_ctrl_pending(tls_->in) == 0)) return;
  if (!tls_->resume) {
    tls_->resume = new uv_timer_t;
    uv_timer_init(h_.handle.loop, tls_->resume);
  }
  tls_->resume->data = this;
  uv_timer_start(tls_->resume, [](uv_timer_t* t) {
    auto* self = static_cast<Socket*>(t->data);
    if (self && self->tls_ && self->reading_ && !self->closing_) self->tls_deliver();
  }, 0, 0);
}

int Socket::tls_write(const uint8_t* data, size_t n) {
  if (!tls_->established || tls_->failed) return UV_EPROTO;
  size_t done = 0;
  while (done < n) {
    ERR_clear_error();
    int r = SSL_write(tls_->ssl, data + done, int(std::min<size_t>(n - done, 1u << 30)));
    if (r <= 0) {
      tls_->failed = true;
      ERR_clear_error();
      return UV_EPROTO;
    }
    done += size_t(r);
  }
  return tls_flush();
}

// Sends the ciphertext OpenSSL produced.
int Socket::tls_flush() {
  size_t pending = BIO_ctrl_pending(tls_->out);
  if (pending == 0) return 0;
  std::string out(pending, '\0');
  int got = BIO_read(tls_->out, out.data(), int(pending));
  if (got <= 0) return 0;
  out.resize(size_t(got));
  return raw_write(std::move(out));
}

// The TLS stream is broken: the owner hears of it as a read error.
void Socket::tls_fail() {
  tls_->failed = true;
  read_stop();
  ERR_clear_error();
  owner_->on_read_end(*this, UV_EPROTO);
}

int Socket::accept_from(uv_stream_t* listener) { return uv_accept(listener, &h_.stream); }

int Socket::adopt(uv_os_sock_t fd) {
  return kind_ == Kind::pipe ? uv_pipe_open(&h_.pipe, fd) : uv_tcp_open(&h_.tcp, fd);
}

int Socket::connect(const sockaddr* addr) {
  connect_req_ = new uv_connect_t;
  connect_req_->data = this;
  int rc = uv_tcp_connect(connect_req_, &h_.tcp, addr, connect_cb);
  if (rc != 0) {
    delete connect_req_;
    connect_req_ = nullptr;
  }
  return rc;
}

int Socket::connect_unix(const std::string& path) {
  connect_req_ = new uv_connect_t;
  connect_req_->data = this;
  uv_pipe_connect(connect_req_, &h_.pipe, path.c_str(), connect_cb);
  return 0;
}

void Socket::connect_cb(uv_connect_t* req, int status) {
  auto* self = static_cast<Socket*>(req->data);
  delete req;
  if (!self) return;  // socket already gone
  self->connect_req_ = nullptr;
  if (status == UV_ECANCELED) return;
  self->owner_->on_connected(*self, status);
}

bool Socket::peer_os_user(std::string& name) const {
  if (kind_ != Kind::pipe) return false;
  uv_os_fd_t fd;
  if (uv_fileno(&h_.handle, &fd) != 0) return false;
  ucred cred{};
  socklen_t len = sizeof cred;
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 || len != sizeof cred) return false;
  std::vector<char> buf(16384);
  passwd pw{};
  passwd* found = nullptr;
  if (::getpwuid_r(cred.uid, &pw, buf.data(), buf.size(), &found) != 0 || !found) return false;
  name = found->pw_name;
  return true;
}

void Socket::set_nodelay() {
  if (kind_ == Kind::tcp) uv_tcp_nodelay(&h_.tcp, 1);
}

const char* Socket::set_tcp_options(const TcpOptions& k) {
  if (kind_ != Kind::tcp) return nullptr;
  uv_os_fd_t fd;
  if (uv_fileno(&h_.handle, &fd) != 0) {
    errno = EBADF;  // no descriptor (the handle is closing)
    return "SO_KEEPALIVE";
  }
  auto set = [fd](int level, int name, int value) {
    return setsockopt(fd, level, name, &value, sizeof value) == 0;
  };
  if (!set(SOL_SOCKET, SO_KEEPALIVE, k.on ? 1 : 0)) return "SO_KEEPALIVE";
  if (k.on) {
    if (k.idle_s > 0 && !set(IPPROTO_TCP, TCP_KEEPIDLE, k.idle_s)) return "TCP_KEEPIDLE";
    if (k.interval_s > 0 && !set(IPPROTO_TCP, TCP_KEEPINTVL, k.interval_s)) return "TCP_KEEPINTVL";
    if (k.count > 0 && !set(IPPROTO_TCP, TCP_KEEPCNT, k.count)) return "TCP_KEEPCNT";
  }
  if (k.user_timeout_ms > 0 && !set(IPPROTO_TCP, TCP_USER_TIMEOUT, k.user_timeout_ms)) return "TCP_USER_TIMEOUT";
  if (k.buffer_bytes > 0 && !set(SOL_SOCKET, SO_SNDBUF, k.buffer_bytes)) return "SO_SNDBUF";
  if (k.buffer_bytes > 0 && !set(SOL_SOCKET, SO_RCVBUF, k.buffer_bytes)) return "SO_RCVBUF";
  return nullptr;
}

int Socket::read_start() {
  if (reading_ || closing_) return 0;
  int rc = uv_read_start(&h_.stream, alloc_cb, read_cb);
  if (rc == 0) reading_ = true;
  if (rc == 0 && tls_) tls_schedule_deliver();
  return rc;
}

void Socket::read_stop() {
  if (!reading_) return;
  uv_read_stop(&h_.stream);
  reading_ = false;
}

void Socket::alloc_cb(uv_handle_t* h, size_t, uv_buf_t* buf) {
  auto* self = static_cast<Socket*>(h->data);
  if (!self->reading_buf_) self->reading_buf_ = acquire_io_buffer().release();
  buf->base = reinterpret_cast<char*>(self->reading_buf_->data);
  buf->len = IoBuffer::kSize;
}

void Socket::read_cb(uv_stream_t* s, ssize_t n, const uv_buf_t*) {
  auto* self = static_cast<Socket*>(s->data);
  IoBufferPtr buf(self->reading_buf_);
  self->reading_buf_ = nullptr;
  if (n == 0) return;  // EAGAIN: the buffer goes back to the free list
  if (n < 0) {
    buf.reset();
    self->read_stop();
    self->owner_->on_read_end(*self, int(n));
    return;
  }
  if (self->tls_) {
    self->tls_input(buf->data, size_t(n));
    return;
  }
  self->owner_->on_read(*self, std::move(buf), size_t(n));
}

// Writes what the kernel takes at once (nothing if writes are queued, to
// keep the order); `done` is how much.
int Socket::try_write_now(const uint8_t* data, size_t n, size_t& done) {
  done = 0;
  if (uv_stream_get_write_queue_size(&h_.stream) != 0) return 0;
  uv_buf_t b = uv_buf_init(reinterpret_cast<char*>(const_cast<uint8_t*>(data)), unsigned(n));
  int rc = uv_try_write(&h_.stream, &b, 1);
  if (rc >= 0) done = size_t(rc);
  else if (rc != UV_EAGAIN && rc != UV_ENOSYS) return rc;
  return 0;
}

int Socket::write(IoBufferPtr buf, size_t offset, size_t n) {
  if (closing_) return UV_EPIPE;
  if (tls_) return tls_write(buf->data + offset, n);
  const uint8_t* p = buf->data + offset;
  size_t done = 0;
  if (int rc = try_write_now(p, n, done); rc != 0) return rc;
  if (done == n) return 0;
  auto* wr = new WriteReq;
  wr->buf = std::move(buf);
  return queue_write(wr, p + done, n - done);
}

int Socket::write(std::string&& data) {
  if (closing_) return UV_EPIPE;
  if (tls_) return tls_write(reinterpret_cast<const uint8_t*>(data.data()), data.size());
  return raw_write(std::move(data));
}

int Socket::raw_write(std::string&& data) {
  if (closing_) return UV_EPIPE;
  size_t done = 0;
  if (int rc = try_write_now(reinterpret_cast<const uint8_t*>(data.data()), data.size(), done); rc != 0)
    return rc;
  if (done == data.size()) return 0;
  auto* wr = new WriteReq;
  wr->str = std::move(data);
  return queue_write(wr, reinterpret_cast<const uint8_t*>(wr->str.data()) + done,
                     wr->str.size() - done);
}

int Socket::write_copy(const uint8_t* data, size_t n) {
  if (closing_) return UV_EPIPE;
  if (tls_) return tls_write(data, n);
  size_t done = 0;
  if (int rc = try_write_now(data, n, done); rc != 0) return rc;
  if (done == n) return 0;
  auto* wr = new WriteReq;
  wr->str.assign(reinterpret_cast<const char*>(data) + done, n - done);
  return queue_write(wr, reinterpret_cast<const uint8_t*>(wr->str.data()), wr->str.size());
}

// Queues the unwritten tail; `wr` owns its storage until write_cb.
int Socket::queue_write(WriteReq* wr, const uint8_t* tail, size_t n) {
  wr->socket = this;
  wr->req.data = wr;
  uv_buf_t b = uv_buf_init(reinterpret_cast<char*>(const_cast<uint8_t*>(tail)), unsigned(n));
  int rc = uv_write(&wr->req, &h_.stream, &b, 1, write_cb);
  if (rc != 0) delete wr;
  return rc;
}

void Socket::write_cb(uv_write_t* req, int status) {
  auto* wr = static_cast<WriteReq*>(req->data);
  Socket* self = wr->socket;
  delete wr;
  if (self->closed_) return;
  if (status < 0) {
    if (status != UV_ECANCELED && !self->closing_) self->owner_->on_write_error(*self, status);
    return;
  }
  if (!self->closing_ && uv_stream_get_write_queue_size(&self->h_.stream) == 0)
    self->owner_->on_drained(*self);
}

size_t Socket::queued() const { return uv_stream_get_write_queue_size(&h_.stream); }

void Socket::close() {
  if (closing_) return;
  closing_ = true;
  reading_ = false;
  if (connect_req_) {
    connect_req_->data = nullptr;  // connect_cb will see the socket is gone
    connect_req_ = nullptr;
  }
  uv_close(&h_.handle, close_cb);
}

void Socket::close_after_flush() {
  if (closing_) return;
  read_stop();
  if (tls_ && tls_->established && !tls_->failed) {
    // close_notify, so the peer knows the stream was not truncated.
    ERR_clear_error();
    SSL_shutdown(tls_->ssl);
    ERR_clear_error();
    tls_flush();
  }
  // A peer that stopped reading with a large backlog gets no graceful flush.
  if (queued() == 0 || queued() > 64 * 1024) {
    close();
    return;
  }
  auto* req = new uv_shutdown_t;
  req->data = this;
  if (uv_shutdown(req, &h_.stream, shutdown_cb) != 0) {
    delete req;
    close();
    return;
  }
  closing_ = true;  // no more writes; the handle closes in shutdown_cb
}

void Socket::shutdown_cb(uv_shutdown_t* req, int) {
  auto* self = static_cast<Socket*>(req->data);
  delete req;
  self->closing_ = false;
  self->close();
}

void Socket::close_cb(uv_handle_t* h) {
  auto* self = static_cast<Socket*>(h->data);
  self->closed_ = true;
  self->owner_->on_closed(*self);
}

bool Socket::address(bool peer, std::string& ip, int& port) const {
  if (kind_ == Kind::pipe) return false;
  sockaddr_storage ss{};
  int len = sizeof(ss);
  int rc = peer ? uv_tcp_getpeername(&h_.tcp, reinterpret_cast<sockaddr*>(&ss), &len)
                : uv_tcp_getsockname(&h_.tcp, reinterpret_cast<sockaddr*>(&ss), &len);
  if (rc != 0) return false;
  char buf[INET6_ADDRSTRLEN] = {};
  if (ss.ss_family == AF_INET) {
    auto* a = reinterpret_cast<sockaddr_in*>(&ss);
    uv_ip4_name(a, buf, sizeof(buf));
    port = ntohs(a->sin_port);
  } else {
    auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
    uv_ip6_name(a, buf, sizeof(buf));
    port = ntohs(a->sin6_port);
  }
  ip = buf;
  return true;
}

std::string Socket::peer_name() const {
  if (kind_ == Kind::pipe) return "unix";
  sockaddr_storage ss{};
  int len = sizeof(ss);
  if (uv_tcp_getpeername(&h_.tcp, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return "?";
  char ip[INET6_ADDRSTRLEN] = {};
  int port = 0;
  if (ss.ss_family == AF_INET) {
    auto* a = reinterpret_cast<sockaddr_in*>(&ss);
    uv_ip4_name(a, ip, sizeof(ip));
    port = ntohs(a->sin_port);
    return std::string(ip) + ":" + std::to_string(port);
  }
  auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
  uv_ip6_name(a, ip, sizeof(ip));
  port = ntohs(a->sin6_port);
  std::string out;  // built step by step: GCC 12 warns falsely on a + chain here
  out += '[';
  out += ip;
  out += "]:";
  out += std::to_string(port);
  return out;
}

}  // namespace pgmux
