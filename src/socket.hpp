// Thin RAII layer over libuv streams (TCP and unix sockets).
//
// - Read buffers come from a per-thread free list only while data is in
//   flight: libuv asks for one when the socket is readable, so an idle
//   connection holds none.
// - Writes try uv_try_write first; only the unwritten tail is queued, and the
//   queued bytes keep their buffer alive (no copy of forwarded data).
// - uv_close is called exactly once; the owner is told in on_closed, after
//   which the Socket may be destroyed.
// TLS plugs in below this interface (start_tls): OpenSSL runs over memory
// BIOs, ciphertext moves through the same libuv handle, and the owner only
// ever sees plaintext through on_read and write.
#pragma once

#include <uv.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace pgmux {

namespace tls {
class Context;
}

// TCP keepalive settings and buffer sizes of one connection; 0 = the
// system's value.
struct TcpOptions {
  bool on = true;
  int idle_s = 0;
  int interval_s = 0;
  int count = 0;
  int user_timeout_ms = 0;  // TCP_USER_TIMEOUT, applied with keepalive on or off
  int buffer_bytes = 0;     // SO_SNDBUF and SO_RCVBUF
};

// A fixed-size I/O buffer from the per-thread free list.
struct IoBuffer {
  static constexpr size_t kSize = 16 * 1024;
  IoBuffer* next_free = nullptr;
  uint8_t data[kSize];
};

struct IoBufferReturn {
  void operator()(IoBuffer* b) const;
};
using IoBufferPtr = std::unique_ptr<IoBuffer, IoBufferReturn>;
IoBufferPtr acquire_io_buffer();
size_t io_buffers_outstanding();  // for tests and stats
// The calling thread's count of buffers in use (read by another thread only
// while this one is parked, see Hub::read_all).
const size_t* io_buffers_outstanding_counter();

class Socket;

// A TCP or unix stream handle, viewable as any of libuv's handle types.
union StreamHandle {
  uv_handle_t handle;
  uv_stream_t stream;
  uv_tcp_t tcp;
  uv_pipe_t pipe;
};

class SocketOwner {
 public:
  virtual ~SocketOwner() = default;
  // `buf` holds `n` new bytes at buf->data; the owner may keep the buffer.
  virtual void on_read(Socket& s, IoBufferPtr buf, size_t n) = 0;
  // UV_EOF or an error: the peer is gone (the owner decides how to close).
  virtual void on_read_end(Socket& s, int status) = 0;
  // Every queued write has been flushed (backpressure release).
  virtual void on_drained(Socket& s) { (void)s; }
  virtual void on_write_error(Socket& s, int status) = 0;
  virtual void on_connected(Socket& s, int status) { (void)s; (void)status; }
  // The TLS handshake started by start_tls ended (`error` says why not).
  virtual void on_tls_handshake(Socket& s, bool ok, const std::string& error) {
    (void)s;
    (void)ok;
    (void)error;
  }
  // The handle is closed; the owner may delete the socket (and itself).
  virtual void on_closed(Socket& s) = 0;
};

class Socket {
 public:
  enum class Kind : uint8_t { tcp, pipe };

  Socket(uv_loop_t* loop, Kind kind, SocketOwner* owner);
  ~Socket();
  Socket(const Socket&) = delete;
  Socket& operator=(const Socket&) = delete;

  uv_stream_t* stream() { return &h_.stream; }
  uv_handle_t* handle() { return &h_.handle; }
  Kind kind() const { return kind_; }

  // Server side: accept a pending connection from `listener`.
  int accept_from(uv_stream_t* listener);
  // Takes over a connected socket accepted outside libuv.
  int adopt(uv_os_sock_t fd);
  // Client side: connect to an address or a unix socket path.
  int connect(const sockaddr* addr);
  int connect_unix(const std::string& path);

  int read_start();
  void read_stop();
  bool reading() const { return reading_; }

  // Sends n bytes of buf (taking ownership of the buffer) / a string.
  // Returns 0 or a libuv error; on error the caller closes.
  int write(IoBufferPtr buf, size_t offset, size_t n);
  int write(std::string&& data);
  // Copies only what the kernel does not take at once.
  int write_copy(const uint8_t* data, size_t n);
  size_t queued() const;  // bytes waiting in the write queue

  void close();
  // Closes once every queued write has reached the kernel (so a final error
  // message is not cancelled by uv_close), or at once if nothing is queued.
  void close_after_flush();
  bool closing() const { return closing_; }
  void set_owner(SocketOwner* owner) { owner_ = owner; }

  // Switches the connection to TLS: from now on reads and writes are
  // decrypted / encrypted. Server side waits for the ClientHello; client
  // side (`host`: SNI, and the name checked in verify-full) sends its hello
  // now. The owner hears on_tls_handshake. Nothing may be buffered unread
  // when this is called (the caller checks: bytes sent before the handshake
  // are an attack, CVE-2021-23214 / 23222). 0 or a libuv error.
  int start_tls(std::shared_ptr<const tls::Context> ctx, const std::string& host = {});
  bool tls() const { return tls_ != nullptr; }
  bool tls_established() const;
  // tls-server-end-point channel binding data of the server certificate
  // (client side: the peer's; server side: our own). Empty without TLS.
  std::string tls_end_point() const;
  // The peer's certificate was presented and verified against the CA.
  bool tls_peer_verified() const;
  // Common name of the peer's certificate; empty when none.
  std::string tls_peer_common_name() const;
  // "TLSv1.3/TLS_AES_256_GCM_SHA384" (logs, SHOW CLIENTS/SERVERS tls);
  // empty without TLS.
  std::string tls_description() const;

  // "ip:port" of the peer, or "unix" for unix sockets.
  std::string peer_name() const;
  // The peer's (or the local) address; false for unix sockets or errors.
  bool address(bool peer, std::string& ip, int& port) const;
  // The OS user name of the process at the other end of a unix socket
  // (SO_PEERCRED); false for TCP or when it cannot be known.
  bool peer_os_user(std::string& name) const;
  void set_nodelay();
  // SO_KEEPALIVE with its timings, TCP_USER_TIMEOUT and the buffer sizes
  // (TCP sockets only; a unix socket is left as it is). The name of the first option the
  // kernel refused (errno tells why), or nullptr.
  const char* set_tcp_options(const TcpOptions& k);

 private:
  struct WriteReq;
  static void alloc_cb(uv_handle_t* h, size_t suggested, uv_buf_t* buf);
  static void read_cb(uv_stream_t* s, ssize_t n, const uv_buf_t* buf);
  static void write_cb(uv_write_t* req, int status);
  static void close_cb(uv_handle_t* h);
  static void connect_cb(uv_connect_t* req, int status);
  static void shutdown_cb(uv_shutdown_t* req, int status);
  int try_write_now(const uint8_t* data, size_t n, size_t& done);
  int queue_write(WriteReq* wr, const uint8_t* tail, size_t n);
  int raw_write(std::string&& data);
  // TLS: ciphertext in from the network / plaintext out to the owner.
  struct Tls;
  void tls_input(const uint8_t* data, size_t n);
  void tls_handshake();
  void tls_deliver();
  int tls_write(const uint8_t* data, size_t n);
  int tls_flush();
  void tls_fail();
  void tls_schedule_deliver();
  std::unique_ptr<Tls> tls_;

  StreamHandle h_;
  SocketOwner* owner_;
  IoBuffer* reading_buf_ = nullptr;  // handed to libuv in alloc_cb
  uv_connect_t* connect_req_ = nullptr;
  Kind kind_;
  bool reading_ = false;
  bool closing_ = false;
  bool closed_ = false;
};

}  // namespace pgmux
