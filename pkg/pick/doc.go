// SPDX-License-Identifier: MIT

// Package pick decides which builder gets a derivation, and says why.
//
// It is pure: machines (from pkg/spec), a per-machine [Load] snapshot (which
// the hook fills from pkg/slots), one [Request] from Nix, what the local
// machine could do ([Local]), the user's [Options] and the current time go
// in; a [Decision] comes out. Nothing here reads files, the clock or the
// network, so a decision can be replayed from its inputs, and `offload pick`
// shows exactly what the hook would answer.
//
// # Eligibility
//
// A machine is eligible for a request when all of these hold (the first four
// are Nix's own matching, src/build-remote/build-remote.cc, so a machines file
// means the same under Nix's hook and offload):
//
//   - it lists the needed system, or the system is "builtin";
//   - every required feature is among its supported or mandatory features;
//   - every one of its mandatory features is required;
//   - its max-jobs is above 0 (Nix never picks such a machine either, but
//     it also postpones forever when it is the only match; offload declines);
//   - it is not excluded by [Options.Only] or [Options.Avoid] (names or URIs,
//     from OFFLOAD_ONLY and OFFLOAD_AVOID) and not drained ([Load.Drained]);
//   - it is not marked unhealthy at the decision's time ([Load.UnhealthyUntil]);
//   - it has a free slot: [Load.Busy] < max-jobs;
//   - its real state, when [Options.Thresholds] are set and its
//     [Load.Reading] is recent enough, is under every threshold: its
//     store's filesystem has the free space asked for ("store nearly
//     full" otherwise), and the builds running there from elsewhere do
//     not fill max-jobs together with this host's, its load per CPU and
//     its CPU and memory pressure are not above their limits ("busy
//     elsewhere" otherwise).
//
// Full slots, an unhealthy mark, a nearly full store and "busy elsewhere"
// pass by themselves: when they are all that keeps the eligible machines
// away, the answer is postpone, or decline when the local machine can build
// it, as Nix's own hook does for full machines.
//
// # Real load
//
// The slot file counts only this host's builds. When several hosts share a
// builder, the hook reads the builder's real state (pkg/remoteload) and
// passes it in [Load.Reading]. With [Thresholds.Builds], a builder's busy
// count is this host's busy slots plus the builds from elsewhere
// ([Reason.Elsewhere], the reading's builds minus this host's builds it
// already counted), for eligibility, score and the local comparison alike;
// the other thresholds only keep a builder away. The zero [Thresholds] turn
// all of it off; [DefaultThresholds] has the defaults of the settings, with
// the reasons for them.
//
// # Ranking
//
// Among eligible machines the best has, in this order of tie-breaks:
//
//  1. the lowest score, busy slots (plus builds from elsewhere, see Real
//     load) divided by effective speed (real
//     division: Nix 2.8 divided integers, so speed factors 1 and 2 made no
//     difference at low load);
//  2. the higher effective speed;
//  3. the emulation preference, see below;
//  4. fewer busy slots;
//  5. the earlier line in the machines file.
//
// The effective speed of a (machine, system) pair is the machine's speed
// factor (0 means 1), divided by [Options.EmulationPenalty] when the machine
// runs that system under emulation.
//
// # Emulation
//
// For each pair the caller may say whether the machine runs the system
// natively or under emulation ([Load.Exec]; probed by `offload check`, or
// stated in configuration). Where nothing is known, a machine that lists
// x86_64-linux or i686-linux and also a needed non-x86 Linux system
// (aarch64-linux, riscv64-linux, armv7l-linux…) is presumed to run the
// latter under qemu-user and binfmt_misc. The order of the systems list does
// not matter: Nix keeps it as a set.
//
// [Options.Emulation] decides how emulating x86 machines rank against others
// whose score and effective speed are equal: [EmulationPrefer] (the default)
// puts them first, because a board's peers are usually weaker than one x86
// server; [EmulationNeutral] ignores the difference; [EmulationAvoid] puts
// them last. The preference only breaks ties: a speed factor the user has
// set always counts first. Example, for an aarch64-linux build with both
// machines idle:
//
//	ssh://pi5    aarch64-linux              - 4  1
//	ssh://server x86_64-linux,aarch64-linux - 16 1
//
// Both score 0 at speed 1. With prefer, server builds it; with neutral, pi5
// does (file order); with avoid, pi5 does. Had pi5 speed factor 2, pi5 would
// win under every setting; had the user set emulation-penalty 2 (server's
// effective speed for aarch64-linux becomes 0.5), pi5 would win too.
//
// # Local versus remote
//
// When Nix is willing to build locally ([Request.LocalWilling]) and the local
// machine can build the derivation (the system is [Local.System], one of
// [Local.ExtraPlatforms] or "builtin", and every required feature is in
// [Local.Features]), offload compares the speed a new build would get on the
// best remote machine and locally, and declines (so Nix builds it locally)
// when local is strictly faster. Ties go to the remote machine, so with
// default settings offload sends work away as Nix does.
//
// The speed a new build gets is effective speed / (1 + utilisation). A
// remote machine's utilisation is its busy slots divided by its max-jobs;
// the local machine's is its load per CPU ([Local.LoadPerCPU], the one-minute
// /proc/loadavg over the CPU count), standing in for busy slots because Nix
// does not tell the hook how many local builds it runs. The local effective
// speed is [Local.SpeedFactor] (setting local-speed-factor, default 1),
// divided by the emulation penalty when the system belongs to another CPU
// family than [Local.System] (an x86_64-linux extra platform on an aarch64
// board, say).
//
// Worked example: a Raspberry Pi (aarch64-linux, local-speed-factor 1, load
// average 2.0 on 4 CPUs, so utilisation 0.5) and one x86 server (speed factor
// 4, 2 of 8 slots busy, emulating aarch64-linux) with emulation-penalty 3:
//
//	local:  1 / (1 + 0.5)               = 0.67
//	server: (4 / 3) / (1 + 2/8) = 1.33 / 1.25 = 1.07
//
// The server is faster: accept. With emulation-penalty 5 the server gets
// 0.8 / 1.25 = 0.64 and the Pi keeps the build: decline. The one-minute load
// average lags; several derivations asked for at once may all see the same
// local figure, and Nix's max-jobs still caps how many it builds locally.
//
// # Answers
//
// [Accept] names the chosen machine. [Postpone] means some machine could
// build it but every such one is full or briefly unhealthy, and the local
// machine cannot (Nix asks again about 5 s later). [Decline] means nobody
// remote could build it now, or the local machine is faster: Nix builds it
// locally or fails. [DeclinePermanently] means there are no machines at all;
// Nix then stops asking for the rest of its session, so it is never answered
// when machines exist but are excluded, drained or unfit.
//
// # Explaining
//
// Every decision carries one [Reason] per machine. To keep the accept path
// free of allocations nothing is formatted while choosing: [Decision.Why],
// [Reason.Why], [Decision.WriteText] and [Decision.WriteJSON] format on
// demand, from the decision and the machines and request it refers to (so
// explain a decision before changing those).
package pick
