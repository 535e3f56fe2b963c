// SPDX-License-Identifier: MIT

// Package slots keeps the load of every builder in one small memory-mapped
// file shared by all offload processes on a host: the hooks Nix starts, one
// per derivation, and the status, pick and drain commands.
//
// Nix's own hook serialises every decision on a global lock file and then
// opens and flock(2)s one lock file per builder slot. offload instead keeps a
// word per slot in a shared mapping and claims it with compare-and-swap, so
// taking or giving back a slot costs a few atomic operations and no system
// call. A hook that is SIGKILLed cannot run its defers, so every slot word
// names its owner (process id and the process's start time from /proc), and
// [File.Acquire] frees slots whose owner is gone when a builder looks full.
//
// # Use
//
// A hook opens the file once with [OpenFallback] (or [Open]), takes a
// [File.Snapshot] for each derivation Nix offers, lets the picker choose,
// then calls [File.Acquire] on the chosen builder's URI (spec.Machine.URI is
// the identity), defers [Slot.Release], reports the connection with
// [File.RecordSuccess] or [File.RecordFailure] and the build with
// [File.BuildDone]. When every builder is busy it may wait a bounded time for
// any slot to be released with [File.Generation] and [File.WaitChange].
//
// Only this package touches the slot file.
//
// # File layout (version 1)
//
// The file is host-local and in the host's byte order. Every field is a
// 64-bit word at an 8-byte aligned offset (32-bit ARM needs that for atomic
// operations), read and written only through bounds-checked atomic helpers;
// texts are NUL-padded byte strings stored eight bytes per word and cut to
// their field. The geometry is in the header, so a reader needs no
// compile-time sizes. Offsets are in bytes.
//
// Header, 4096 bytes at offset 0:
//
//	off  size  field
//	  0     8  magic "offlslot" (0x746f6c736c66666f read as a native word)
//	  8     8  layout version (1)
//	 16     8  header size (4096)
//	 24     8  record count R
//	 32     8  record size (512 + S*128)
//	 40     8  slots per record S
//	 48     8  slot entry size (128)
//	 56     8  decision ring offset (4096 + R*record size)
//	 64     8  decision ring entries D
//	 72     8  decision entry size (256)
//	 80     8  derivation table offset (ring offset + D*256)
//	 88     8  derivation table entries N
//	 96     8  derivation entry size (128)
//	104     8  file size (derivation table offset + N*128)
//	112     8  moved: 0 while live; 1 once a rebuilt file replaced this one
//	120     4  change counter, bumped by every release (a futex word)
//	124     4  number of processes waiting on the change counter
//	128     8  configuration generation, bumped when records change
//	136     8  decisions ever logged (the ring's head)
//	144     8  creation time (Unix ns)
//	152  3944  reserved, zero
//
// Record i, one per builder, at 4096 + i*record size; a record whose hash is
// zero is free:
//
//	off  size  field
//	  0     8  FNV-1a 64 hash of the builder URI (0: free record)
//	  8     8  flags: 1 listed in a machines file, 2 drained
//	 16     8  max jobs (capacity, at most S)
//	 24     8  builds started (slots acquired)
//	 32     8  builds succeeded
//	 40     8  builds failed
//	 48     8  bytes sent
//	 56     8  bytes received
//	 64     8  consecutive connection failures
//	 72     8  unhealthy until (Unix ns; 0: healthy)
//	 80     8  last error code (ErrCode)
//	 88     8  last connect latency (ns)
//	 96     8  last successful connect (Unix ns)
//	104     8  upload token owner (0: free)
//	112     8  load averages of the reading: 1, 5 and 15 min in
//	           thousandths + 1, 21 bits each from bit 0 (0: unknown)
//	120     8  time of the reading (Unix ns; 0: none; all ones: being
//	           written)
//	128   128  systems: 8 × {FNV-1a 64 hash of the system (0: free),
//	           word: 1 native, 2 emulated in bits 0-1, 4 qemu, time of
//	           the probe in Unix seconds from bit 8}
//	256   128  builder URI (cut)
//	384    64  display name (cut)
//	448     8  load refresh token owner (0: free)
//	456     8  CPUs + 1 (bits 0-19), running builds + 1 (bits 20-39),
//	           this host's slots in the building phase when the reading
//	           was stored (bits 40-59)
//	464     8  pressure "some avg10" in hundredths of a percent + 1: CPU
//	           (bits 0-15), memory (16-31), IO (32-47)
//	472     8  available memory in bytes + 1
//	480     8  total memory in bytes + 1
//	488     8  free space of the store's filesystem in bytes + 1
//	496     8  size of the store's filesystem in bytes + 1
//	504     8  the link's measure ([Link]): throughput in KiB/s of
//	           wire bytes (bits 0-31; 0: unknown), last compressed
//	           copy's size in thousandths of its own (bits 32-43; 0:
//	           none), large copies still to go uncompressed (bits
//	           44-51), compressed copies since the last uncompressed
//	           one (bits 52-59; 255: none measured uncompressed),
//	           fetchable inputs still to go up without a fetch on the
//	           builder after one failed there (bits 60-63)
//	512 S*128  slot entries
//
// Slot entry j of a record, at record + 512 + j*128:
//
//	off  size  field
//	  0     8  owner: pid<<42 | (process start time in clock ticks & (1<<42-1)); 0: free
//	  8     8  acquired at (Unix ns)
//	 16     8  phase (Phase)
//	 24     8  bytes transferred so far
//	 32    16  reserved
//	 48    80  derivation name (cut)
//
// Decision ring entry k (of D, written round-robin) at the ring offset +
// k*256:
//
//	off  size  field
//	  0     8  sequence: number of the decision + 1; 0 while being written
//	  8     8  time (Unix ns)
//	 16     8  answer (pick.Answer)
//	 24     8  hash of the builder URI (0: none)
//	 32    96  derivation name (cut)
//	128    64  builder (cut)
//	192    64  reason (cut)
//
// Derivation table entry (remembered derivation names, [File.RememberDrv])
// at the table offset + k*128: FNV-1a 64 hash of the name (0: free) 8, last
// noted (Unix ns) 8, flags 8 (1: failed under emulation), reserved 8, name
// 96.
//
// The link's measure was a reserved word, zero, in earlier files of
// version 1: zero reads as unknown, so it needed no new version. Writers
// change it with one compare-and-swap of the whole word
// ([File.UpdateLink]).
//
// A reading's fields are stored plus one so that zero, the value of a new or
// older file, means unknown. The one process holding the refresh token
// ([File.TryRefresh]) writes a reading; any writer marks the time word
// "being written" first and stores the time last, and readers retry when
// the time word changed under them, so a reading is never seen half
// written.
//
// The words of a record up to offset 512, and the first 48 bytes of a slot
// entry, keep their meaning in every later layout version, so a file of an
// older version (or a damaged one) is rebuilt keeping its counters.
//
// # Capacity
//
// Slot j of a builder with capacity c may be taken only while j < c-e, where
// e is the number of slots at or above c still held (after the machines file
// lowered c). e only falls, so no builder ever runs more than its capacity,
// also while the machines file changes under held slots.
//
// # Changing the file's shape
//
// Adding builders and resizing them happens in place, serialised by an
// exclusive flock(2) on a lock file beside the slot file, <file>.lock
// (never on the hot path). The lock file is mode 0600 and must belong to
// the slot file's owner: Linux lets any process that can open a file flock it,
// so a lock on the world-readable slot file could be held by any local user
// and stall every hook. Every wait for the lock is bounded. When the
// records or slot entries run out, or the file is damaged or of an older
// version, the file is rebuilt: the rebuilder takes the lock, sets "moved"
// in the old header, copies every readable counter and every slot owner into
// a new file and renames it over the old one. A process still mapping the old
// file sees "moved" before its next decision, waits (bounded, polling the
// path) for the new file, and continues on it; slots it held keep their
// index there. A rebuild interrupted after "moved" is finished by the next
// writer to take the lock. A file
// of a newer layout version is never overwritten ([ErrNewerLayout]).
package slots
