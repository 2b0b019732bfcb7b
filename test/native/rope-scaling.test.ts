import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { loadAddon, nativeModelConfig, type ModelConfig, type RopeScalingType } from "../../src/native/addon.ts";
import { fromHfConfig, hfConfig, ropeScalingOf } from "../../src/train/model-config.ts";

// The tiny preset's heads (16 wide) at θ 500,000, pretrained at 256 positions.
const base: ModelConfig = { nLayers: 1, hidden: 64, nHeads: 4, ffn: 32, vocab: 64, maxSeq: 1024, ropeTheta: 500000, normEps: 1e-5 };

/**
 * transformers 5.18's modeling_rope_utils (ROPE_INIT_FUNCTIONS[type](LlamaConfig(hidden_size=64,
 * num_attention_heads=4, max_position_embeddings=1024, rope_theta=500000, rope_scaling=…))), printed to 9 digits:
 * the inverse frequencies and the attention factor. Written here, so the test needs no Python.
 */
const TRANSFORMERS: Record<RopeScalingType, { factor: number; invFreq: number[]; scale: number }> = {
  linear: { factor: 2, scale: 1, invFreq: [0.5, 0.0969613791, 0.0188030154, 0.00364633254, 0.000707106723, 0.000137124094, 2.65914787e-5, 5.15669262e-6] },
  yarn: { factor: 4, scale: 1.138629436111989, invFreq: [1.0, 0.145442069, 0.0188030154, 0.00182316627, 0.000353553361, 6.85620471e-5, 1.32957393e-5, 2.57834631e-6] },
  llama3: { factor: 8, scale: 1, invFreq: [1.0, 0.193922758, 0.0105382307, 0.000911583134, 0.000176776681, 3.42810235e-5, 6.64786967e-6, 1.28917316e-6] },
};

describe("RoPE scaling", () => {
  for (const [type, want] of Object.entries(TRANSFORMERS) as [RopeScalingType, (typeof TRANSFORMERS)[RopeScalingType]][]) {
    it(`${type}: the frequencies and cos/sin scale are transformers' (float32 there, so to 1e-6)`, () => {
      const model = new (loadAddon().Model)(nativeModelConfig({ ...base, ropeScaling: ropeScalingOf(type, want.factor, 256) }), "cpu", 1);
      try {
        const got = model.ropeFrequencies();
        assert.equal(got.invFreq.length, 8);
        for (const [i, f] of want.invFreq.entries()) assert.ok(Math.abs(got.invFreq[i]! - f) <= 1e-6 * f, `${type} inv_freq[${i}]: ${got.invFreq[i]} vs ${f}`);
        assert.ok(Math.abs(got.scale - want.scale) < 1e-6, `${type} scale ${got.scale}`);
      } finally {
        model.dispose();
      }
    });
  }

  it("no scaling: the base frequencies θ^(-2i/D) and cos/sin as they are", () => {
    // C's pow and JavaScript's may differ in the last bit; bench/same-bytes.sh shows the table is the ops' old one.
    const model = new (loadAddon().Model)(nativeModelConfig(base), "cpu", 1);
    try {
      const got = model.ropeFrequencies();
      for (let i = 0; i < 8; i++) {
        const want = Math.pow(500000, (-2 * i) / 16);
        assert.ok(Math.abs(got.invFreq[i]! - want) <= 2 * Number.EPSILON * want, `inv_freq[${i}] ${got.invFreq[i]} vs ${want}`);
      }
      assert.equal(got.scale, 1);
    } finally {
      model.dispose();
    }
  });

  it("config.json carries rope_theta and rope_scaling as transformers reads them, and reads back the same", () => {
    for (const type of ["linear", "yarn", "llama3"] as const) {
      const config = { ...base, ropeScaling: ropeScalingOf(type, 4, 256) };
      const hf = hfConfig(config, 100001, 100000);
      assert.equal(hf.rope_theta, 500000);
      assert.equal((hf.rope_scaling as { rope_type: string }).rope_type, type);
      // linear reads no original positions (transformers' takes none): they read back as the config's own.
      const back = type === "linear" ? { ...config, ropeScaling: ropeScalingOf(type, 4, base.maxSeq) } : config;
      assert.deepEqual(fromHfConfig(JSON.parse(JSON.stringify(hf)), "config.json"), back);
    }
    // transformers 5 writes rope_parameters instead.
    const v5 = { ...hfConfig(base, 1, 0), rope_theta: undefined, rope_parameters: { rope_type: "yarn", rope_theta: 250000, factor: 8, original_max_position_embeddings: 512 } };
    assert.deepEqual(fromHfConfig(v5, "config.json").ropeScaling, ropeScalingOf("yarn", 8, 512));
    assert.equal(fromHfConfig(v5, "config.json").ropeTheta, 250000);
    assert.throws(() => fromHfConfig({ ...hfConfig(base, 1, 0), rope_scaling: { rope_type: "dynamic", factor: 2 } }, "c.json"), /c\.json: RoPE scaling 'dynamic' is not supported/);
    assert.throws(() => fromHfConfig({ ...hfConfig(base, 1, 0), rope_scaling: { rope_type: "yarn", factor: 2, original_max_position_embeddings: 64, mscale: 0.7 } }, "c.json"), /mscale is not supported/);
  });
});
