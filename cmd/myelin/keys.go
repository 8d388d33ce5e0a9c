package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/myelin-hs/myelin/impl/config"
	"github.com/myelin-hs/myelin/impl/federation"
	"github.com/myelin-hs/myelin/impl/storage"
)

func init() {
	commands["keys"] = keysCommand
}

// keysCommand manages the federation signing key:
//
//	myelin keys rotate   retire the current key (kept in old_verify_keys
//	                     with expired_ts = now) and start signing with a new one
func keysCommand(ctx context.Context, cfg *config.Config, args []string, stdout, _ io.Writer) error {
	if len(args) != 1 || args[0] != "rotate" {
		return errors.New("usage: myelin keys [flags] rotate (flags before the subcommand)")
	}
	store, err := storage.Open(ctx, cfg.Database, storage.Options{MaxConns: 2})
	if err != nil {
		return err
	}
	defer store.Close()
	old, cur, err := federation.RotateKey(ctx, store, time.Now())
	if err != nil {
		return err
	}
	if old == "" {
		fmt.Fprintf(stdout, "new signing key %s (there was none before)\n", cur)
		return nil
	}
	fmt.Fprintf(stdout, "retired %s; now signing with %s (running servers switch within seconds)\n", old, cur)
	return nil
}
