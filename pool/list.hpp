// Intrusive doubly-linked list: membership costs no allocation, and an
// object knows which list holds it, so removal is O(1) and cannot miss.
#pragma once

#include <cassert>
#include <cstddef>

namespace pgmux::pool {

template <class T>
struct ListHook {
  T* prev = nullptr;
  T* next = nullptr;
  const void* owner = nullptr;  // the list holding the object, or null
  bool linked() const { return owner != nullptr; }
};

template <class T, ListHook<T> T::*Hook>
class List {
 public:
  List() = default;
  List(const List&) = delete;
  List& operator=(const List&) = delete;

  bool empty() const { return head_ == nullptr; }
  size_t size() const { return size_; }
  T* front() const { return head_; }
  T* back() const { return tail_; }
  bool contains(const T* x) const { return (x->*Hook).owner == this; }
  static T* next(const T* x) { return (x->*Hook).next; }

  void push_back(T* x) {
    ListHook<T>& h = x->*Hook;
    assert(!h.linked());
    h.prev = tail_;
    h.next = nullptr;
    h.owner = this;
    if (tail_) (tail_->*Hook).next = x; else head_ = x;
    tail_ = x;
    ++size_;
  }
  void push_front(T* x) {
    ListHook<T>& h = x->*Hook;
    assert(!h.linked());
    h.prev = nullptr;
    h.next = head_;
    h.owner = this;
    if (head_) (head_->*Hook).prev = x; else tail_ = x;
    head_ = x;
    ++size_;
  }
  void remove(T* x) {
    ListHook<T>& h = x->*Hook;
    assert(h.owner == this);
    if (h.prev) (h.prev->*Hook).next = h.next; else head_ = h.next;
    if (h.next) (h.next->*Hook).prev = h.prev; else tail_ = h.prev;
    h.prev = h.next = nullptr;
    h.owner = nullptr;
    --size_;
  }
  T* pop_front() {
    T* x = head_;
    if (x) remove(x);
    return x;
  }

 private:
  T* head_ = nullptr;
  T* tail_ = nullptr;
  size_t size_ = 0;
};

}  // namespace pgmux::pool
