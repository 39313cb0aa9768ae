package nn

import (
	"runtime"
	"sync"
)

// minParallelWork is the number of multiply-adds below which a kernel runs
// on one goroutine, because starting goroutines would cost more than it
// saves.
const minParallelWork = 1 << 16

// parallelFor calls body on disjoint ranges [lo, hi) that cover [0, n),
// on up to GOMAXPROCS goroutines when work (multiply-adds in total) is
// large enough, and waits for all of them.
func parallelFor(n int, work int, body func(lo, hi int)) {
	workers := runtime.GOMAXPROCS(0)
	if workers > n {
		workers = n
	}
	if workers <= 1 || work < minParallelWork {
		body(0, n)
		return
	}
	var wg sync.WaitGroup
	for w := range workers {
		lo, hi := w*n/workers, (w+1)*n/workers
		wg.Add(1)
		go func() {
			defer wg.Done()
			body(lo, hi)
		}()
	}
	wg.Wait()
}
