// The pod sandbox ("pause") process of the local e2e cluster's containerd.
module langscale.local/e2e/pause

go 1.25.0
