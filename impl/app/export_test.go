package app

import "time"

// SetCertCheckInterval lets tests see a renewed certificate quickly.
func SetCertCheckInterval(d time.Duration) { certCheckInterval = d }
