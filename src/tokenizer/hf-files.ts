/**
 * The tokenizer files a checkpoint carries for Python users (transformers' AutoTokenizer), written so that its
 * default call, `tok(text)`, gives exactly the ids the model was trained on.
 */

export interface TrainedSpecials {
  eosId: number;
  bosId: number;
  /** whether the build put BOS before every document */
  addBos: boolean;
}

type AddedToken = { id: number; content: string };

function addedTokens(json: { added_tokens?: AddedToken[] }): AddedToken[] {
  return json.added_tokens ?? [];
}

/**
 * tokenizer.json with a post-processor that adds what training added, and nothing else: BOS before each text when
 * the build added BOS, no post-processor otherwise. DeepSeek's file prepends BOS, and transformers applies that
 * post-processor whatever tokenizer_config.json's add_bos_token says, so a model trained without BOS would be
 * prompted with one. Everything else in the file is kept as it was.
 */
export function trainedTokenizerJson(tokenizerJson: Buffer, specials: TrainedSpecials): Buffer {
  const json = JSON.parse(tokenizerJson.toString("utf8")) as { added_tokens?: AddedToken[]; post_processor?: unknown };
  if (specials.addBos) {
    const bos = addedTokens(json).find((t) => t.id === specials.bosId)?.content;
    if (bos === undefined) throw new Error(`tokenizer.json has no added token with the BOS id ${specials.bosId}`);
    const special = (type_id: number) => ({ SpecialToken: { id: bos, type_id } });
    const sequence = (id: "A" | "B", type_id: number) => ({ Sequence: { id, type_id } });
    json.post_processor = {
      type: "TemplateProcessing",
      single: [special(0), sequence("A", 0)],
      pair: [special(0), sequence("A", 0), special(1), sequence("B", 1)],
      special_tokens: { [bos]: { id: bos, ids: [specials.bosId], tokens: [bos] } },
    };
  } else {
    json.post_processor = null;
  }
  return Buffer.from(JSON.stringify(json, null, 2) + "\n");
}

/**
 * tokenizer_config.json, so AutoTokenizer loads the checkpoint's tokenizer as trained: the BOS/EOS strings by id,
 * BOS added only if the data had it, no clean-up of spaces on decode (DeepSeek's own config turns it off; decoded
 * text is then exactly what the ids stand for).
 *
 * The class is PreTrainedTokenizerFast, which runs tokenizer.json's own pipeline. Not LlamaTokenizerFast:
 * transformers 5 maps that name to its LlamaTokenizer, which replaces the byte-level pre-tokenizer with a Metaspace
 * one (SentencePiece's), so "Hello, world!" gets other ids and lm-evaluation-harness other scores. In 4.x that
 * class keeps tokenizer.json's pre-tokenizer but rebuilds the post-processor from add_bos_token; with the
 * post-processor written by trainedTokenizerJson, PreTrainedTokenizerFast gives the trained ids in both.
 */
export function trainedTokenizerConfig(tokenizerJson: Buffer, specials: TrainedSpecials, maxSeq: number): Record<string, unknown> {
  const added = addedTokens(JSON.parse(tokenizerJson.toString("utf8")));
  const content = (id: number) => added.find((t) => t.id === id)?.content ?? null;
  return {
    tokenizer_class: "PreTrainedTokenizerFast",
    bos_token: content(specials.bosId),
    eos_token: content(specials.eosId),
    pad_token: null,
    unk_token: null,
    add_bos_token: specials.addBos,
    add_eos_token: false,
    clean_up_tokenization_spaces: false,
    model_max_length: maxSeq,
  };
}
