package trainer

// lrFactor is the reference's "linear" policy: the learning rate stays at its initial value
// for nEpochs epochs, then falls linearly to zero over nDecay epochs. epoch counts from 0.
func lrFactor(epoch, nEpochs, nDecay int) float32 {
	f := 1 - float32(max(0, epoch+1-nEpochs))/float32(nDecay+1)
	return max(f, 0)
}
