module github.com/offload-nix/offload

go 1.26.8

require (
	github.com/alecthomas/kong v1.17.0
	github.com/kevinburke/ssh_config v1.6.0
	github.com/klauspost/compress v1.20.5
	github.com/nix-community/go-nix v0.0.0-20250101154619-4bdde671e0a1
	github.com/rogpeppe/go-internal v1.14.1
	golang.org/x/crypto v0.58.0
	golang.org/x/sys v0.49.0
)

require golang.org/x/tools v0.26.0 // indirect
