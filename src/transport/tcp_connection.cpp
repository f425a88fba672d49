// A TCP transport's connection: reading frames straight into their buffers, writing queued
// frames with one gathered write, the TLS handshake, and closing (see tcp_parts.hpp).
#include "transport/tcp_parts.hpp"

#include "wire/messages.hpp"

#include <limits>

namespace dx::transport::tcp_detail {

tcp_connection::tcp_connection(std::shared_ptr<engine> e, tcp::socket socket, std::shared_ptr<handler> h,
                               std::string remote, std::shared_ptr<asio::ssl::context> tls)
    : engine_(std::move(e)),
      socket_(engine_->io()),
      tls_context_(std::move(tls)),
      linger_timer_(engine_->io()),
      handshake_timer_(engine_->io()),
      trust_timer_(engine_->io()),
      remote_(std::move(remote)),
      handler_(std::move(h)) {
  if (tls_context_)
    tls_ = std::make_unique<tls_stream>(std::move(socket), *tls_context_);
  else
    socket_ = std::move(socket);
}

void tcp_connection::handshake(asio::ssl::stream_base::handshake_type type, const std::string& host,
                               std::chrono::milliseconds limit, handshake_done done) {
  ready_ = false;
  if (type == asio::ssl::stream_base::client) {
    error_code not_an_address;
    (void)asio::ip::make_address(host, not_an_address);
    if (!host.empty() && not_an_address) SSL_set_tlsext_host_name(tls_->native_handle(), host.c_str());  // SNI
    if (engine_->cfg().tls && engine_->tls_settings().verify_peer_name && !host.empty())
      tls_->set_verify_callback(asio::ssl::host_name_verification(host));
  }
  auto timed_out = std::make_shared<bool>(false);
  if (limit.count() > 0) {
    handshake_timer_.expires_after(limit);
    handshake_timer_.async_wait([self = shared_from_this(), timed_out](const error_code& ec) {
      if (ec || self->ready_ || self->socket_closed_) return;
      *timed_out = true;
      error_code ignored;
      self->socket().cancel(ignored);
    });
  }
  tls_->async_handshake(type,
                        [self = shared_from_this(), limit, timed_out, done = std::move(done)](const error_code& ec) {
                          self->handshake_timer_.cancel();
                          if (ec) {
                            if (*timed_out) return done(fmt::format("no TLS handshake within {} ms", limit.count()));
                            return done(describe_tls_error(ec, self->tls_->native_handle()));
                          }
                          self->ready_ = true;
                          done(std::nullopt);
                          // Frames sent while the handshake ran go out now.
                          bool pending = false;
                          {
                            std::lock_guard lk(self->out_mutex_);
                            pending = self->write_in_flight_;
                          }
                          if (pending) self->start_flush();
                        });
}

void tcp_connection::send(wire::frame f) {
  if (f.archive.size() > UINT32_MAX) {
    close(fmt::format("cannot send a frame archive of {} bytes (the limit is 4 GiB)", f.archive.size()));
    return;
  }
  if (close_requested_.load(std::memory_order_acquire)) return;
  const std::uint64_t body = f.body_size();
  const config& cfg = engine_->cfg();
  if (body > cfg.max_frame_size && body > cfg.max_value_size) {
    // The runtime checks values where they are made; this is the last guard of the peer's limit.
    close(fmt::format("cannot send a {} frame of {} bytes: over the value limit of {} bytes (options::max_value_size)",
                      wire::msg_name(f.type), body, cfg.max_value_size));
    return;
  }
  count_sent(f);
  f.flags &= ~wire::frame_transport_flags;
  out_entry e;
  if (body > cfg.max_frame_size) {
    f.flags |= wire::frame_streamed;
    const std::uint64_t chunk = std::max<std::uint64_t>(1, std::min(stream_chunk_bytes, cfg.max_frame_size));
    e.chunk_headers.reserve(static_cast<std::size_t>((body + chunk - 1) / chunk));
    for (std::uint64_t at = 0; at < body; at += chunk) {
      wire::frame_header h;
      h.type = f.type;
      h.flags = wire::frame_chunk;
      h.payload_size = std::min(chunk, body - at);
      e.chunk_headers.push_back(wire::encode_header(h));
    }
  }
  e.header = wire::encode_header(f);
  e.frame = std::move(f);
  {
    std::lock_guard lk(out_mutex_);
    if (sends_closed_) return;
    outbox_.push_back(std::move(e));
    if (write_in_flight_) return;  // the running flush picks this frame up when it completes
    write_in_flight_ = true;
  }
  engine_->post([self = shared_from_this()] { self->start_flush(); });
}

void tcp_connection::close(const std::string& reason) {
  if (close_requested_.exchange(true, std::memory_order_acq_rel)) return;
  // If the post is refused the transport has stopped, and stop() closed this connection already.
  engine_->post([self = shared_from_this(), reason] { self->do_close(reason, close_mode::graceful); });
}

void tcp_connection::set_handler(std::shared_ptr<handler> h) {
  if (!h) return;
  if (engine_->on_io_thread())
    attach(std::move(h), false);
  else
    engine_->post([self = shared_from_this(), h = std::move(h)]() mutable { self->attach(std::move(h), true); });
}

void tcp_connection::on_trusted() {
  if (engine_->on_io_thread())
    become_trusted();
  else
    engine_->post([self = shared_from_this()] { self->become_trusted(); });
}

void tcp_connection::mark_untrusted(std::string host, std::chrono::milliseconds limit) {
  untrusted_ = true;
  untrusted_host_ = std::move(host);
  trust_timer_.expires_after(limit);
  trust_timer_.async_wait([self = shared_from_this(), limit](const error_code& ec) {
    if (ec || !self->untrusted_ || self->closed_ || self->refused_) return;
    const std::string why = fmt::format("no handshake within {} ms", limit.count());
    log_limited(log_level::warn, "closing the connection with {}: {}", self->remote_, why);
    self->close_requested_.store(true, std::memory_order_release);
    self->do_close(why, close_mode::abort, log_level::off);
  });
}

// Nothing more is read from it, and it is closed a little later rather than at once: a peer that
// reconnects as soon as it is refused would otherwise keep the io thread accepting and closing.
// It stays counted against its address's cap meanwhile.
void tcp_connection::refuse_untrusted(const std::string& why) {
  refused_ = true;
  log_limited(log_level::warn, "closing the connection with {}: {}", remote_, why);
  const auto delay = std::min<std::chrono::milliseconds>(refusal_delay, engine_->cfg().handshake_timeout);
  trust_timer_.cancel();
  trust_timer_.expires_after(delay);
  trust_timer_.async_wait([self = shared_from_this(), why](const error_code& ec) {
    if (ec || self->closed_) return;
    self->close_requested_.store(true, std::memory_order_release);
    self->do_close(why, close_mode::abort, log_level::off);
  });
}

void tcp_connection::become_trusted() {
  if (!untrusted_) return;
  untrusted_ = false;
  trust_timer_.cancel();
  if (!untrusted_host_.empty()) engine_->release_untrusted(std::exchange(untrusted_host_, std::string()));
}

void tcp_connection::force_close(const std::string& reason) {
  close_requested_.store(true, std::memory_order_release);
  do_close(reason, close_mode::abort);
}

void tcp_connection::read_header() {
  asio::async_read(stream_, asio::buffer(in_header_),
                   [self = shared_from_this()](const error_code& ec, std::size_t) { self->on_header(ec); });
}

void tcp_connection::on_header(const error_code& ec) {
  if (closed_) return discard_input(ec);
  if (ec) return on_read_error(ec);
  count_arrived(wire::header_size);
  const wire::frame_header h = wire::decode_header(in_header_.data());
  if (!tls_ && in_header_[0] == 0x16 && in_header_[1] == 0x03) {  // a TLS handshake record
    const std::string why = "a TLS client on a plain TCP port (give this side TLS too: options::tls, --tls-cert)";
    log_limited(log_level::warn, "closing the connection with {}: {}", remote_, why);
    return do_close(why, close_mode::failed, log_level::off);
  }
  if (stream_left_ > 0 || (h.flags & (wire::frame_streamed | wire::frame_chunk)) != 0) return on_stream_header(h);
  const std::uint64_t limit = untrusted_ ? engine_->cfg().untrusted_frame_limit : engine_->cfg().max_frame_size;
  if (auto why = wire::check_header(h, limit)) {
    if (untrusted_) {
      *why += " before the handshake";
      return refuse_untrusted(*why);
    }
    log_limited(log_level::warn, "closing the connection with {}: {}", remote_, *why);
    return do_close(*why, close_mode::failed, log_level::off);
  }
  in_frame_ = wire::frame{};
  in_frame_.type = h.type;
  in_frame_.flags = h.flags;
  in_archive_size_ = h.archive_size;
  in_payload_size_ = h.payload_size;
  in_payload_ = h.payload_size > 0 ? std::make_shared<std::string>() : nullptr;
  if (h.archive_size == 0 && h.payload_size == 0) return on_body(error_code{});
  body_started_ = std::chrono::steady_clock::now();
  set_receiving(h.archive_size + h.payload_size);
  read_body_window();
}

// The buffer grows by the window about to be read, so that memory follows the bytes that
// arrive, not the size a header announces. A trusted peer's buffer is reserved at once (address
// space only: its pages are touched as the windows fill), so that growing never copies.
void tcp_connection::read_body_window() {
  const bool archive_left = in_frame_.archive.size() < in_archive_size_;
  std::string& target = archive_left ? in_frame_.archive : *in_payload_;
  const std::uint64_t total = archive_left ? in_archive_size_ : in_payload_size_;
  const std::size_t filled = target.size();
  const std::size_t window = std::clamp(filled, body_window_min, body_window_max);
  const std::size_t next = static_cast<std::size_t>(std::min<std::uint64_t>(total, filled + window));
  try {
    if (filled == 0 && !untrusted_) target.reserve(static_cast<std::size_t>(total));
    target.resize(next);
  } catch (const std::exception&) {  // bad_alloc, or length_error for a size past what a string holds
    const auto why = fmt::format("cannot allocate a frame body of {} bytes", in_archive_size_ + in_payload_size_);
    log_limited(log_level::warn, "closing the connection with {}: {}", remote_, why);
    return do_close(why, close_mode::failed, log_level::off);
  }
  asio::async_read(stream_, asio::buffer(target.data() + filled, next - filled), read_fully{},
                   [self = shared_from_this()](const error_code& ec, std::size_t) {
                     if (ec || self->closed_) return self->on_body(ec);
                     const bool done = self->in_frame_.archive.size() == self->in_archive_size_ &&
                                       (!self->in_payload_ || self->in_payload_->size() == self->in_payload_size_);
                     if (done) return self->on_body(ec);
                     self->read_body_window();
                   });
}

void tcp_connection::refuse_input(const std::string& why) {
  log_limited(log_level::warn, "closing the connection with {}: {}", remote_, why);
  do_close(why, close_mode::failed, log_level::off);
}

// The announcement of a streamed frame, or one of its chunks (see wire::frame_streamed).
void tcp_connection::on_stream_header(const wire::frame_header& h) {
  const config& cfg = engine_->cfg();
  if (auto why = wire::check_header(h, std::numeric_limits<std::uint64_t>::max())) return refuse_input(*why);
  if (stream_left_ == 0) {
    if ((h.flags & wire::frame_chunk) != 0) return refuse_input("a chunk of a streamed frame that was not announced");
    const std::uint64_t body = std::uint64_t{h.archive_size} + h.payload_size;
    if (untrusted_) return refuse_untrusted(fmt::format("a streamed frame of {} bytes before the handshake", body));
    if (!trusted())
      return refuse_input(
          fmt::format("a streamed frame of {} bytes before the handshake completed (the limit until then is a frame "
                      "of {} bytes)",
                      body, cfg.max_frame_size));
    if (auto why = wire::check_header(h, cfg.max_value_size))
      return refuse_input(fmt::format("streamed {}: {} (options::max_value_size)", wire::msg_name(h.type), *why));
    if (body == 0) return refuse_input("a streamed frame without a body");
    in_frame_ = wire::frame{};
    in_frame_.type = h.type;
    in_frame_.flags = h.flags & ~wire::frame_streamed;
    in_payload_.reset();
    try {
      in_frame_.archive.resize(h.archive_size);
      if (h.payload_size > 0) {
        in_payload_ = std::make_shared<std::string>();
        in_payload_->resize(static_cast<std::size_t>(h.payload_size));
      }
    } catch (const std::bad_alloc&) {
      return refuse_input(fmt::format("cannot allocate a streamed frame body of {} bytes", body));
    }
    stream_left_ = body;
    stream_at_ = 0;
    body_started_ = std::chrono::steady_clock::now();
    set_receiving(body);
    return read_header();
  }
  if ((h.flags & wire::frame_streamed) != 0 || (h.flags & wire::frame_chunk) == 0 || h.type != in_frame_.type ||
      h.archive_size != 0 || h.payload_size == 0 || h.payload_size > stream_left_ ||
      h.payload_size > cfg.max_frame_size)
    return refuse_input(fmt::format(
        "expected the next chunk of a streamed {} frame ({} bytes left, at most {} a chunk), got a header of type {} "
        "flags {:#x} with {} + {} bytes",
        wire::msg_name(in_frame_.type), stream_left_, cfg.max_frame_size, h.type, h.flags, h.archive_size,
        h.payload_size));
  // The chunk's bytes continue the archive, then the payload: one or two pieces of destination.
  const std::uint64_t archive = in_frame_.archive.size();
  std::uint64_t at = stream_at_;
  std::uint64_t n = h.payload_size;
  std::array<asio::mutable_buffer, 2> into{};  // copied into the read operation, like on_header's
  if (at < archive) {
    const std::uint64_t take = std::min(n, archive - at);
    into[0] = asio::buffer(in_frame_.archive.data() + at, static_cast<std::size_t>(take));
    at += take;
    n -= take;
  }
  if (n > 0) into[1] = asio::buffer(in_payload_->data() + (at - archive), static_cast<std::size_t>(n));
  asio::async_read(stream_, into, read_fully{},
                   [self = shared_from_this()](const error_code& ec, std::size_t got) { self->on_chunk(ec, got); });
}

void tcp_connection::on_chunk(const error_code& ec, std::size_t n) {
  if (closed_) return discard_input(ec);
  if (ec) return on_read_error(ec);
  count_arrived(n);
  stream_at_ += n;
  stream_left_ -= n;
  if (stream_left_ == 0) return on_body(error_code{});
  read_header();
}

void tcp_connection::on_body(const error_code& ec) {
  if (closed_) return discard_input(ec);
  if (ec) return on_read_error(ec);
  wire::frame f = std::move(in_frame_);
  f.payload = std::move(in_payload_);
  in_frame_ = wire::frame{};
  if (stream_at_ == 0) count_arrived(f.body_size());  // a streamed frame counted its chunks
  stream_at_ = 0;
  set_receiving(0);
  if (f.body_size() > 0)
    f.receive_us = static_cast<std::uint64_t>(
        std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - body_started_)
            .count());
  deliver(std::move(f));
  if (!closed_) return read_header();
  if (!socket_closed_) discard_input(error_code{});
}

void tcp_connection::on_read_error(const error_code& ec) {
  if (ec == asio::error::eof || is_tls_truncation(ec)) return do_close("connection closed by peer", close_mode::failed);
  if (ec.category() == asio::error::get_ssl_category())
    return do_close(fmt::format("connection lost: TLS: {}", describe_tls_error(ec, nullptr)), close_mode::failed);
  do_close(fmt::format("connection lost: {}", ec.message()), close_mode::failed);
}

// After a graceful close the read side only waits for the peer's end of stream, so that closing
// does not reset a connection whose peer is still reading what was sent before close().
void tcp_connection::discard_input(const error_code& ec) {
  if (socket_closed_) return;
  if (ec) return close_socket();
  if (!discard_buffer_) discard_buffer_ = std::make_unique<char[]>(16384);
  stream_.async_read_some(asio::buffer(discard_buffer_.get(), 16384),
                          [self = shared_from_this()](const error_code& ec, std::size_t) { self->discard_input(ec); });
}

void tcp_connection::deliver(wire::frame&& f) {
  if (closed_ || close_requested_.load(std::memory_order_acquire)) return;
  if (!handler_ || !held_.empty()) {
    held_.push_back(std::move(f));
    return;
  }
  invoke_on_frame(std::move(f));
}

void tcp_connection::invoke_on_frame(wire::frame&& f) {
  auto h = handler_;  // on_frame may replace the handler; keep this one alive until it returns
  const std::uint64_t body = f.body_size();
  auto what = call_user([&] { h->on_frame(*this, std::move(f)); });
  count_received(body);  // after the handler: see connection::bytes_received
  if (what) {
    close_requested_.store(true, std::memory_order_release);
    do_close(fmt::format("the frame handler threw: {}", *what), close_mode::abort, log_level::warn);
  }
}

void tcp_connection::attach(std::shared_ptr<handler> h, bool may_drain_now) {
  if (closed_delivered_) return;
  handler_ = std::move(h);
  if (held_.empty() && !pending_closed_) return;
  // Called from inside some other callback: deliver from a handler of our own instead, so that
  // callbacks never nest. Frames arriving meanwhile queue behind the held ones.
  if (may_drain_now)
    drain();
  else
    engine_->post([self = shared_from_this()] { self->drain(); });
}

void tcp_connection::drain() {
  while (handler_ && !held_.empty() && !close_requested_.load(std::memory_order_acquire)) {
    wire::frame f = std::move(held_.front());
    held_.pop_front();
    invoke_on_frame(std::move(f));
  }
  if (handler_ && pending_closed_) {
    const std::string reason = std::move(*pending_closed_);
    pending_closed_.reset();
    deliver_closed(reason);
  }
}

void tcp_connection::deliver_closed(const std::string& reason) {
  if (closed_delivered_) return;
  if (!handler_) {
    pending_closed_ = reason;
    return;
  }
  closed_delivered_ = true;
  held_.clear();
  // Released after on_closed: the handler commonly owns this connection, and this breaks the cycle.
  const std::shared_ptr<handler> h = std::move(handler_);
  if (auto what = call_user([&] { h->on_closed(*this, reason); }))
    log(log_level::warn, "the close handler of the connection with {} threw: {}", remote_, *what);
}

void tcp_connection::start_flush() {
  if (!ready_) return;  // the handshake's end calls again; write_in_flight_ stays set meanwhile
  bool idle = false;
  {
    std::lock_guard lk(out_mutex_);
    if (outbox_.empty() || socket_closed_) {
      outbox_.clear();
      write_in_flight_ = false;
      idle = true;
    } else {
      writing_.swap(outbox_);
    }
  }
  if (idle) {
    // A graceful close waits for the queued frames, then ends the stream.
    if (lingering_ && !socket_closed_) {
      error_code ignored;
      socket().shutdown(tcp::socket::shutdown_send, ignored);
    }
    return;
  }
  write_buffers_.clear();
  for (const out_entry& e : writing_) {
    write_buffers_.push_back(asio::buffer(e.header));
    if (e.chunk_headers.empty()) {
      if (!e.frame.archive.empty()) write_buffers_.push_back(asio::buffer(e.frame.archive));
      if (e.frame.payload && !e.frame.payload->empty()) write_buffers_.push_back(asio::buffer(*e.frame.payload));
      continue;
    }
    // Streamed: each chunk's header, then its bytes, from the frame's own buffers.
    const asio::const_buffer parts[2] = {asio::buffer(e.frame.archive),
                                         e.frame.payload ? asio::buffer(*e.frame.payload) : asio::const_buffer{}};
    std::size_t part = 0;
    std::size_t offset = 0;
    for (const auto& chunk_header : e.chunk_headers) {
      write_buffers_.push_back(asio::buffer(chunk_header));
      std::uint64_t left = wire::decode_header(chunk_header.data()).payload_size;
      while (left > 0) {
        while (offset == parts[part].size()) {
          ++part;
          offset = 0;
        }
        const std::size_t take = static_cast<std::size_t>(std::min<std::uint64_t>(left, parts[part].size() - offset));
        write_buffers_.push_back(asio::buffer(static_cast<const char*>(parts[part].data()) + offset, take));
        offset += take;
        left -= take;
      }
    }
  }
  if (tls_) gather_small_pieces();
  write_pos_ = 0;
  write_window();
}

void tcp_connection::gather_small_pieces() {
  std::size_t small = 0;
  for (const auto& b : write_buffers_)
    if (b.size() < tls_gather_below) small += b.size();
  gathered_.clear();
  gathered_.reserve(small);  // reserved once: the buffers below point into it
  std::vector<asio::const_buffer> out;
  out.reserve(write_buffers_.size());
  std::size_t run = std::string::npos;  // where the run of small pieces being gathered starts
  auto end_run = [&] {
    if (run == std::string::npos) return;
    out.push_back(asio::buffer(gathered_.data() + run, gathered_.size() - run));
    run = std::string::npos;
  };
  for (const auto& b : write_buffers_) {
    if (b.size() >= tls_gather_below) {
      end_run();
      out.push_back(b);
      continue;
    }
    if (run == std::string::npos) run = gathered_.size();
    gathered_.append(static_cast<const char*>(b.data()), b.size());
  }
  end_run();
  write_buffers_.swap(out);
}

void tcp_connection::write_window() {
  const asio::const_buffer* first = write_buffers_.data() + write_pos_;
  const asio::const_buffer* last = write_buffers_.data() + write_buffers_.size();
  auto done = [self = shared_from_this()](const error_code& ec, std::size_t n) { self->on_written(ec, n); };
  if (tls_)
    tls_->async_write_some(buffer_window{first, last}, std::move(done));
  else
    socket_.async_write_some(buffer_window{first, last}, std::move(done));
}

void tcp_connection::on_written(const error_code& ec, std::size_t n) {
  if (!ec) {
    while (n > 0 && write_pos_ < write_buffers_.size()) {
      asio::const_buffer& b = write_buffers_[write_pos_];
      if (n < b.size()) {
        b += n;
        n = 0;
      } else {
        n -= b.size();
        ++write_pos_;
      }
    }
    if (write_pos_ < write_buffers_.size()) return write_window();
  }
  writing_.clear();
  write_buffers_.clear();
  gathered_.clear();
  if (ec) {
    if (!closed_)
      do_close(fmt::format("connection lost: {}", ec.message()), close_mode::failed);
    else
      close_socket();
    std::lock_guard lk(out_mutex_);
    outbox_.clear();
    write_in_flight_ = false;
    return;
  }
  start_flush();
}

void tcp_connection::do_close(const std::string& reason, close_mode mode, log_level level) {
  if (closed_) {
    if (mode != close_mode::graceful) close_socket();
    return;
  }
  if (mode == close_mode::failed) drain();  // frames received before the failure still count
  closed_ = true;
  bool flush_first = false;
  {
    std::lock_guard lk(out_mutex_);
    sends_closed_ = true;
    flush_first = mode == close_mode::graceful && write_in_flight_;
    if (mode != close_mode::graceful) outbox_.clear();
  }
  if (mode == close_mode::graceful && !socket_closed_) {
    lingering_ = true;
    if (!flush_first) {
      error_code ignored;
      socket().shutdown(tcp::socket::shutdown_send, ignored);
    }
    linger_timer_.expires_after(linger_timeout);
    linger_timer_.async_wait([self = shared_from_this()](const error_code& ec) {
      if (!ec) self->close_socket();
    });
  } else {
    close_socket();
  }
  log(level, "connection with {} closed: {}", remote_, reason);
  deliver_closed(reason);
}

void tcp_connection::close_socket() {
  if (socket_closed_) return;
  socket_closed_ = true;
  linger_timer_.cancel();
  handshake_timer_.cancel();
  trust_timer_.cancel();
  if (!untrusted_host_.empty()) engine_->release_untrusted(std::exchange(untrusted_host_, std::string()));
  error_code ignored;
  socket().shutdown(tcp::socket::shutdown_both, ignored);
  socket().close(ignored);
  engine_->remove(this);
}

}  // namespace dx::transport::tcp_detail
