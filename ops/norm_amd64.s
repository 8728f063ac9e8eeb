//go:build amd64 && !purego

// The norms' two passes over a group, sixteen floats at a time.

#include "textflag.h"

// func affineAVX512(y, x *float32, n int, s, t float32, relu int)
// y[i] = x[i]*s + t, then max(y[i], 0) when relu != 0, for i < n; n is a multiple of 16.
TEXT ·affineAVX512(SB), NOSPLIT, $0-40
	MOVQ y+0(FP), DI
	MOVQ x+8(FP), SI
	MOVQ n+16(FP), CX
	VBROADCASTSS s+24(FP), Z1
	VBROADCASTSS t+28(FP), Z2
	VPXORD Z3, Z3, Z3
	MOVQ relu+32(FP), R8
	TESTQ R8, R8
	JNE affineAVX512_relu
affineAVX512_loop:
	TESTQ CX, CX
	JEQ affineAVX512_done
	VMOVUPS (SI), Z0
	VFMADD213PS Z2, Z1, Z0
	VMOVUPS Z0, (DI)
	ADDQ $64, SI
	ADDQ $64, DI
	SUBQ $16, CX
	JMP affineAVX512_loop
affineAVX512_relu:
	TESTQ CX, CX
	JEQ affineAVX512_done
	VMOVUPS (SI), Z0
	VFMADD213PS Z2, Z1, Z0
	VMAXPS Z3, Z0, Z0
	VMOVUPS Z0, (DI)
	ADDQ $64, SI
	ADDQ $64, DI
	SUBQ $16, CX
	JMP affineAVX512_relu
affineAVX512_done:
	VZEROUPPER
	RET

// func momentsAVX512(x *float32, n int, shift float64, acc *[32]float64)
// acc[0:16] gets the sums of x[i] - shift and acc[16:32] the sums of their squares, in
// float64, each over a lane of 16; n is a multiple of 16.
TEXT ·momentsAVX512(SB), NOSPLIT, $0-32
	MOVQ x+0(FP), SI
	MOVQ n+8(FP), CX
	VBROADCASTSD shift+16(FP), Z1
	MOVQ acc+24(FP), DI
	VPXORQ Z4, Z4, Z4
	VPXORQ Z5, Z5, Z5
	VPXORQ Z6, Z6, Z6
	VPXORQ Z7, Z7, Z7
momentsAVX512_loop:
	TESTQ CX, CX
	JEQ momentsAVX512_done
	VCVTPS2PD (SI), Z2
	VCVTPS2PD 32(SI), Z3
	VSUBPD Z1, Z2, Z2
	VSUBPD Z1, Z3, Z3
	VADDPD Z2, Z4, Z4
	VADDPD Z3, Z5, Z5
	VFMADD231PD Z2, Z2, Z6
	VFMADD231PD Z3, Z3, Z7
	ADDQ $64, SI
	SUBQ $16, CX
	JMP momentsAVX512_loop
momentsAVX512_done:
	VMOVUPD Z4, 0(DI)
	VMOVUPD Z5, 64(DI)
	VMOVUPD Z6, 128(DI)
	VMOVUPD Z7, 192(DI)
	VZEROUPPER
	RET
