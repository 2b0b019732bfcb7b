/** Seeded random documents that stress a tokenizer: many scripts, emoji and ZWJ sequences, combining marks,
 * whitespace and newline runs, numerals of every script, the byte-level added characters, special-token
 * strings, lone surrogates, and documents that end in whitespace. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), a | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const range = (lo: number, hi: number) => Array.from({ length: hi - lo + 1 }, (_, i) => String.fromCodePoint(lo + i));

const POOLS: string[][] = [
  range(0x61, 0x7a), range(0x41, 0x5a), range(0x30, 0x39), range(0x21, 0x2f), range(0x3a, 0x40), range(0x5b, 0x60), range(0x7b, 0x7e),
  range(0xa1, 0xff), // Latin-1, including the 13 byte-level added characters (ø ö ú ÿ õ ÷ û ý À ù Á þ ü)
  range(0x100, 0x24f), range(0x370, 0x3ff), range(0x400, 0x4ff), range(0x590, 0x5ff), range(0x600, 0x6ff), range(0x900, 0x97f),
  range(0xe00, 0xe7f), range(0x3040, 0x30ff), range(0x4e00, 0x4fff), range(0x9f00, 0x9fff), range(0xac00, 0xad00), range(0xff01, 0xff5e),
  range(0x2000, 0x206f), range(0x2150, 0x218b), range(0x2460, 0x24ff), range(0x300, 0x36f), // punctuation, number forms, circled, combining
  ["٠", "١", "٢", "٣", "٤", "٥", "٦", "٧", "٨", "٩", "۰", "۴", "०", "१", "९", "০", "৯", "๑", "๙", "０", "９", "²", "³", "¹", "½", "¼", "¾", "Ⅻ", "ⅸ", "〇", "𝟘", "𝟙", "𐒠", "𑁦"],
  ["😀", "👍🏽", "👨‍👩‍👧‍👦", "🏳️‍🌈", "❤️", "🇨🇳", "🧑‍💻", "✋🏿", "🫠", "🀄", "#️⃣"],
  [" ", "  ", "   ", "\t", "\n", "\r\n", "\r", "\n\n", " \n", "\u3000", "\u00a0", "\u2003", "\u2028", "\u200b", "\u0085", "\u000b", "\u000c", "\ufeff", "\u202f"],
  ["<｜end▁of▁sentence｜>", "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence", "ø", "÷", "Á"],
  ["\ud800", "\udfff", "a\ud83d", "\ude00b"], // lone surrogates in JS strings
  [" the", " of", " and", " to", "ing", " 中国", " 的", "def ", "return ", " 1234", "3.14159", "0x1F", "2024-01-01", "http://x.y/z?q=1"],
];

export function fuzzDocuments(count: number, seed: number): string[] {
  const rand = rng(seed);
  const pick = <T>(xs: readonly T[]) => xs[Math.floor(rand() * xs.length)]!;
  const docs: string[] = [];
  for (let d = 0; d < count; d++) {
    const parts = 1 + Math.floor(rand() * 24);
    let doc = "";
    for (let p = 0; p < parts; p++) {
      const pool = rand() < 0.35 ? POOLS[Math.floor(rand() * 7)]! : pick(POOLS);
      const n = 1 + Math.floor(rand() * (rand() < 0.1 ? 12 : 4));
      for (let i = 0; i < n; i++) doc += pick(pool);
      if (rand() < 0.02) doc += String.fromCodePoint(Math.floor(rand() * 0x2ffff)).replace(/[\ud800-\udfff]/g, "");
    }
    if (rand() < 0.15) doc += pick([" ", "  ", "\n", "\t ", "\u3000", " \r\n"]);
    docs.push(doc);
  }
  return docs;
}
