package main

// myelin appservice list: the application services loaded from the
// registration files of the configuration, with their users' counts.

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/myelin-hs/myelin/impl/appservice"
	"github.com/myelin-hs/myelin/impl/config"
	"github.com/myelin-hs/myelin/impl/storage"
)

func init() {
	commands["appservice"] = appserviceCommand
}

const appserviceUsage = "myelin appservice list [--appservice-config FILE …]"

func appserviceCommand(ctx context.Context, cfg *config.Config, args []string, stdout, _ io.Writer) error {
	if len(args) != 1 || args[0] != "list" {
		return errUsage(appserviceUsage)
	}
	reg := appservice.NewRegistry(cfg.ServerName)
	if err := reg.Load(cfg.AppServiceConfigFiles); err != nil {
		return err
	}
	store, err := storage.Open(ctx, cfg.Database, storage.Options{MaxConns: 2})
	if err != nil {
		return err
	}
	defer store.Close()
	counts, err := reg.CountUsers(ctx, store)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSENDER\tUSER NAMESPACES\tUSERS\tRATE LIMITED\tFILE")
	for _, r := range reg.All() {
		var ns []string
		for _, n := range r.Namespaces.Users {
			s := n.Regex
			if n.Exclusive {
				s += " (exclusive)"
			}
			ns = append(ns, s)
		}
		if len(ns) == 0 {
			ns = []string{"-"}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%v\t%s\n", r.ID, r.Sender, strings.Join(ns, ", "), counts[r.ID], r.Limited(), r.File)
	}
	return tw.Flush()
}
