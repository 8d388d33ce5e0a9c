package federation

import (
	"context"
	"fmt"
	"time"

	"github.com/uptrace/bun"

	"github.com/myelin-hs/myelin/impl/storage"
)

// QueueEDU queues one EDU of any type for destination inside tx, the
// transaction of the change it carries (e.g. a send-to-device request):
// the sender delivers it in outbox order, once, with back-off, like the
// device-list updates. Sending to this server itself is refused.
func (o *Outbox) QueueEDU(ctx context.Context, tx bun.IDB, destination, eduType string, content []byte) error {
	if destination == o.ServerName {
		return fmt.Errorf("queue %s: %s is this server", eduType, destination)
	}
	row := storage.OutboxEDU{Destination: destination, EDUType: eduType, Content: string(content), CreatedTS: time.Now().UnixMilli()}
	if _, err := tx.NewInsert().Model(&row).Exec(ctx); err != nil {
		return fmt.Errorf("queue %s: %w", eduType, err)
	}
	if _, err := tx.NewInsert().Model(&storage.Destination{Destination: destination}).
		On("CONFLICT (destination) DO NOTHING").Exec(ctx); err != nil {
		return err
	}
	if o.Poke != nil {
		storage.AfterCommit(ctx, o.Poke)
	}
	return nil
}
