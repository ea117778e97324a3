package ipvs_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/vigil-lb/vigil/internal/testenv"
	"github.com/vigil-lb/vigil/ipvs"
)

// TestNetnsKernelWithoutIPVS: on a kernel without IPVS (the development
// and CI hosts), NewKernel must fail clearly instead of letting moby/ipvs
// "succeed" silently.
func TestNetnsKernelWithoutIPVS(t *testing.T) {
	testenv.NeedNetns(t)
	if _, err := netlink.GenlFamilyGet("IPVS"); err == nil {
		t.Skip("this kernel has IPVS; the guest tests cover it")
	}
	k, err := ipvs.NewKernel(ipvs.KernelOptions{})
	if err == nil {
		k.Close()
		t.Fatal("NewKernel succeeded on a kernel without IPVS")
	}
	if !errors.Is(err, ipvs.ErrNotAvailable) || !strings.Contains(err.Error(), "IPVS is not available in this kernel: load the ip_vs module") {
		t.Fatalf("err = %v", err)
	}
}
