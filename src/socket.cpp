#include "src/socket.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cstring>
#include <new>

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

struct Socket::WriteReq {
  uv_write_t req;
  Socket* socket;
  IoBufferPtr buf;
  std::string str;
};

Socket::Socket(uv_loop_t* loop, Kind kind, SocketOwner* owner) : kind_(kind), owner_(owner) {
  std::memset(&h_, 0, sizeof(h_));
  if (kind == Kind::tcp) uv_tcp_init(loop, &h_.tcp);
  else uv_pipe_init(loop, &h_.pipe, 0);
  h_.handle.data = this;
}

Socket::~Socket() {
  // A Socket must be destroyed only after on_closed (or if never used by the
  // loop, which uv requires to be closed too); see close().
  if (reading_buf_) IoBufferReturn{}(reading_buf_);
  delete connect_req_;
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

void Socket::set_nodelay() {
  if (kind_ == Kind::tcp) uv_tcp_nodelay(&h_.tcp, 1);
}

int Socket::read_start() {
  if (reading_ || closing_) return 0;
  int rc = uv_read_start(&h_.stream, alloc_cb, read_cb);
  if (rc == 0) reading_ = true;
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
