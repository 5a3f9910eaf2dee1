;; A WASI preview1 adapter for Go's wasip1 runtime, written for acidic.
;;
;; Go's runtime calls WASI while it starts, before its heap exists. The
;; standard reactor adapter allocates its own state through the module's
;; `cabi_realloc` on the first WASI call, which in Go runs before the runtime
;; can serve it and traps. This adapter keeps no state and never allocates:
;; it implements, on top of WASI 0.2.0 (`wit/adapter.wit`), only the
;; functions a Go step imports. Results the host hands back through memory
;; (a wall-clock time, a stream error) go to a scratch area borrowed from the
;; caller's own output pointer: saved before the call and restored after, so
;; nothing of Go's memory changes but the outputs WASI promises.
;;
;; What a step gets: stdout and stderr (to the host's log, as for any step),
;; both clocks, random bytes, sleeping; no args, no environment variables, no
;; files (no preopened directories), no stdin.
(module
  (import "env" "memory" (memory 0))
  (import "wasi:clocks/monotonic-clock@0.2.0" "now" (func $mono_now (result i64)))
  (import "wasi:clocks/monotonic-clock@0.2.0" "subscribe-duration" (func $subscribe (param i64) (result i32)))
  (import "wasi:clocks/wall-clock@0.2.0" "now" (func $wall_now (param i32)))
  (import "wasi:random/random@0.2.0" "get-random-u64" (func $random_u64 (result i64)))
  (import "wasi:io/poll@0.2.0" "[method]pollable.block" (func $block (param i32)))
  (import "wasi:io/poll@0.2.0" "[resource-drop]pollable" (func $drop_pollable (param i32)))
  (import "wasi:io/error@0.2.0" "[resource-drop]error" (func $drop_error (param i32)))
  (import "wasi:io/streams@0.2.0" "[method]output-stream.blocking-write-and-flush"
    (func $write_and_flush (param i32 i32 i32 i32)))
  (import "wasi:io/streams@0.2.0" "[resource-drop]output-stream" (func $drop_stream (param i32)))
  (import "wasi:cli/stdout@0.2.0" "get-stdout" (func $get_stdout (result i32)))
  (import "wasi:cli/stderr@0.2.0" "get-stderr" (func $get_stderr (result i32)))

  ;; errno values
  (global $SUCCESS i32 (i32.const 0))
  (global $EBADF i32 (i32.const 8))
  (global $EINVAL i32 (i32.const 28))
  (global $ENOTSUP i32 (i32.const 58))

  ;; The scratch area: 24 bytes at `ptr` rounded down to 8, if memory has them.
  (func $scratch (param $ptr i32) (result i32)
    (local $base i32)
    (local.set $base (i32.and (local.get $ptr) (i32.const -8)))
    (if (i64.gt_u
          (i64.add (i64.extend_i32_u (local.get $base)) (i64.const 24))
          (i64.mul (i64.extend_i32_u (memory.size)) (i64.const 65536)))
      (then (unreachable)))
    (local.get $base))

  (func (export "args_sizes_get") (param $argc i32) (param $size i32) (result i32)
    (i32.store (local.get $argc) (i32.const 0))
    (i32.store (local.get $size) (i32.const 0))
    (global.get $SUCCESS))
  (func (export "args_get") (param i32 i32) (result i32) (global.get $SUCCESS))
  (func (export "environ_sizes_get") (param $count i32) (param $size i32) (result i32)
    (i32.store (local.get $count) (i32.const 0))
    (i32.store (local.get $size) (i32.const 0))
    (global.get $SUCCESS))
  (func (export "environ_get") (param i32 i32) (result i32) (global.get $SUCCESS))

  (func (export "sched_yield") (result i32) (global.get $SUCCESS))

  ;; A Go program exits only when it fails (a panic, `os.Exit`): the step traps.
  (func (export "proc_exit") (param i32) (unreachable))

  ;; clock 0 is the wall clock; every other clock id reads the monotonic clock.
  (func (export "clock_time_get") (param $id i32) (param $precision i64) (param $out i32) (result i32)
    (local $base i32) (local $s0 i64) (local $s1 i64) (local $s2 i64) (local $t i64)
    (if (i32.eqz (local.get $id))
      (then
        (local.set $base (call $scratch (local.get $out)))
        (local.set $s0 (i64.load (local.get $base)))
        (local.set $s1 (i64.load offset=8 (local.get $base)))
        (local.set $s2 (i64.load offset=16 (local.get $base)))
        (call $wall_now (local.get $base))
        ;; seconds * 1e9 + nanoseconds
        (local.set $t
          (i64.add
            (i64.mul (i64.load (local.get $base)) (i64.const 1000000000))
            (i64.extend_i32_u (i32.load offset=8 (local.get $base)))))
        (i64.store (local.get $base) (local.get $s0))
        (i64.store offset=8 (local.get $base) (local.get $s1))
        (i64.store offset=16 (local.get $base) (local.get $s2)))
      (else (local.set $t (call $mono_now))))
    (i64.store (local.get $out) (local.get $t))
    (global.get $SUCCESS))

  (func (export "random_get") (param $buf i32) (param $len i32) (result i32)
    (local $word i64)
    (block $done
      (loop $words
        (br_if $done (i32.lt_u (local.get $len) (i32.const 8)))
        (i64.store (local.get $buf) (call $random_u64))
        (local.set $buf (i32.add (local.get $buf) (i32.const 8)))
        (local.set $len (i32.sub (local.get $len) (i32.const 8)))
        (br $words)))
    (if (local.get $len)
      (then
        (local.set $word (call $random_u64))
        (block $tail_done
          (loop $tail
            (br_if $tail_done (i32.eqz (local.get $len)))
            (i64.store8 (local.get $buf) (local.get $word))
            (local.set $word (i64.shr_u (local.get $word) (i64.const 8)))
            (local.set $buf (i32.add (local.get $buf) (i32.const 1)))
            (local.set $len (i32.sub (local.get $len) (i32.const 1)))
            (br $tail)))))
    (global.get $SUCCESS))

  ;; Writes to stdout (1) and stderr (2), in pieces of at most 4096 bytes
  ;; (the most `blocking-write-and-flush` takes).
  (func (export "fd_write") (param $fd i32) (param $iovs i32) (param $n i32) (param $written i32) (result i32)
    (local $stream i32) (local $ptr i32) (local $len i32) (local $piece i32) (local $total i32)
    (local $base i32) (local $s0 i64) (local $s1 i64) (local $s2 i64)
    (if (i32.eq (local.get $fd) (i32.const 1))
      (then (local.set $stream (call $get_stdout)))
      (else
        (if (i32.eq (local.get $fd) (i32.const 2))
          (then (local.set $stream (call $get_stderr)))
          (else (return (global.get $EBADF))))))
    (local.set $base (call $scratch (local.get $written)))
    (block $iovs_done
      (loop $next_iov
        (br_if $iovs_done (i32.eqz (local.get $n)))
        (local.set $ptr (i32.load (local.get $iovs)))
        (local.set $len (i32.load offset=4 (local.get $iovs)))
        (local.set $total (i32.add (local.get $total) (local.get $len)))
        (block $pieces_done
          (loop $next_piece
            (br_if $pieces_done (i32.eqz (local.get $len)))
            (local.set $piece
              (select (i32.const 4096) (local.get $len) (i32.gt_u (local.get $len) (i32.const 4096))))
            (local.set $s0 (i64.load (local.get $base)))
            (local.set $s1 (i64.load offset=8 (local.get $base)))
            (local.set $s2 (i64.load offset=16 (local.get $base)))
            (call $write_and_flush (local.get $stream) (local.get $ptr) (local.get $piece) (local.get $base))
            ;; err(last-operation-failed(error)): drop the error handle
            (if (i32.and
                  (i32.eq (i32.load8_u (local.get $base)) (i32.const 1))
                  (i32.eqz (i32.load8_u offset=4 (local.get $base))))
              (then (call $drop_error (i32.load offset=8 (local.get $base)))))
            (i64.store (local.get $base) (local.get $s0))
            (i64.store offset=8 (local.get $base) (local.get $s1))
            (i64.store offset=16 (local.get $base) (local.get $s2))
            (local.set $ptr (i32.add (local.get $ptr) (local.get $piece)))
            (local.set $len (i32.sub (local.get $len) (local.get $piece)))
            (br $next_piece)))
        (local.set $iovs (i32.add (local.get $iovs) (i32.const 8)))
        (local.set $n (i32.sub (local.get $n) (i32.const 1)))
        (br $next_iov)))
    (call $drop_stream (local.get $stream))
    (i32.store (local.get $written) (local.get $total))
    (global.get $SUCCESS))

  ;; Sleeps until the earliest clock subscription is due, then reports every
  ;; subscription as ready (Go subscribes to clocks only: to sleep, and when
  ;; it has nothing to run until a timer fires).
  ;; subscription (48 bytes): userdata u64 @0, tag u8 @8, clock: id u32 @16,
  ;; timeout u64 @24, precision u64 @32, flags u16 @40 (1: absolute).
  ;; event (32 bytes): userdata u64 @0, error u16 @8, type u8 @10.
  (func (export "poll_oneoff") (param $in i32) (param $out i32) (param $n i32) (param $nevents i32) (result i32)
    (local $i i32) (local $sub i32) (local $ev i32) (local $timeout i64) (local $min i64) (local $now i64)
    (local $pollable i32)
    (if (i32.eqz (local.get $n)) (then (return (global.get $EINVAL))))
    (local.set $min (i64.const -1))
    (block $scan_done
      (loop $scan
        (br_if $scan_done (i32.ge_u (local.get $i) (local.get $n)))
        (local.set $sub (i32.add (local.get $in) (i32.mul (local.get $i) (i32.const 48))))
        (if (i32.eqz (i32.load8_u offset=8 (local.get $sub)))
          (then
            (local.set $timeout (i64.load offset=24 (local.get $sub)))
            (if (i32.and (i32.load16_u offset=40 (local.get $sub)) (i32.const 1))
              (then
                (local.set $now (call $mono_now))
                (local.set $timeout
                  (select (i64.sub (local.get $timeout) (local.get $now)) (i64.const 0)
                    (i64.gt_u (local.get $timeout) (local.get $now))))))
            (if (i64.lt_u (local.get $timeout) (local.get $min))
              (then (local.set $min (local.get $timeout))))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $scan)))
    (if (i64.ne (local.get $min) (i64.const -1))
      (then
        (local.set $pollable (call $subscribe (local.get $min)))
        (call $block (local.get $pollable))
        (call $drop_pollable (local.get $pollable))))
    (local.set $i (i32.const 0))
    (block $events_done
      (loop $events
        (br_if $events_done (i32.ge_u (local.get $i) (local.get $n)))
        (local.set $sub (i32.add (local.get $in) (i32.mul (local.get $i) (i32.const 48))))
        (local.set $ev (i32.add (local.get $out) (i32.mul (local.get $i) (i32.const 32))))
        (i64.store (local.get $ev) (i64.load (local.get $sub)))
        (i32.store16 offset=8 (local.get $ev) (i32.const 0))
        (i32.store8 offset=10 (local.get $ev) (i32.load8_u offset=8 (local.get $sub)))
        (i64.store offset=16 (local.get $ev) (i64.const 0))
        (i32.store16 offset=24 (local.get $ev) (i32.const 0))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $events)))
    (i32.store (local.get $nevents) (local.get $n))
    (global.get $SUCCESS))

  ;; stdin, stdout and stderr are character devices; there is no other fd.
  (func (export "fd_fdstat_get") (param $fd i32) (param $out i32) (result i32)
    (if (i32.gt_u (local.get $fd) (i32.const 2)) (then (return (global.get $EBADF))))
    (i32.store8 (local.get $out) (i32.const 2))
    (i32.store16 offset=2 (local.get $out) (i32.const 0))
    (i64.store offset=8 (local.get $out) (i64.const 0))
    (i64.store offset=16 (local.get $out) (i64.const 0))
    (global.get $SUCCESS))
  (func (export "fd_fdstat_set_flags") (param i32 i32) (result i32) (global.get $ENOTSUP))
  (func (export "fd_prestat_get") (param i32 i32) (result i32) (global.get $EBADF))
  (func (export "fd_prestat_dir_name") (param i32 i32 i32) (result i32) (global.get $EBADF))
  (func (export "fd_close") (param i32) (result i32) (global.get $EBADF))
  ;; stdin is empty.
  (func (export "fd_read") (param $fd i32) (param i32 i32) (param $read i32) (result i32)
    (if (i32.ne (local.get $fd) (i32.const 0)) (then (return (global.get $EBADF))))
    (i32.store (local.get $read) (i32.const 0))
    (global.get $SUCCESS))
)
