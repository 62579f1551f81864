#!/bin/sh
# make_data.sh OUTDIR - turns facts.txt (next to this script) into the training data of
# shammah's embedded default model:
#   OUTDIR/train.jsonl   one {"messages":[user Q, assistant A]} object per (Q, A) pair
#   OUTDIR/heldout.tsv   id<TAB>keywords<TAB>question, one per T line (evaluation only)
#   OUTDIR/corpus.txt    every Q and A text, one per line (the tokenizer's vocabulary source;
#                        held-out questions are left out so they stay unseen)
# It validates facts.txt first (see DATA.md); any problem is printed as
# `facts.txt:LINE: problem` and nothing is written. POSIX sh and awk only.
set -u

if [ $# -ne 1 ] || [ -z "$1" ]; then
    echo "usage: sh make_data.sh OUTDIR" >&2
    exit 2
fi
out=$1
here=$(cd "$(dirname "$0")" && pwd) || exit 1
facts=$here/facts.txt
if [ ! -r "$facts" ]; then
    echo "make_data: cannot read $facts" >&2
    exit 1
fi
mkdir -p "$out" || exit 1

# Written to temporary names and renamed only when everything validated, so a failed run never
# leaves a half-written data set behind.
tmp_train=$out/.train.jsonl.tmp
tmp_held=$out/.heldout.tsv.tmp
tmp_corpus=$out/.corpus.txt.tmp

# LC_ALL=C: awk works on bytes, so UTF-8 text passes through untouched and only ASCII control
# bytes need escaping.
# AUG: extra noisy variants of each training question (synonyms, a dropped word, a typo, case,
# punctuation, a prefix or suffix), so the model keys on what a question is about rather than
# on its exact wording. Deterministic (srand(42)) for a given awk.
LC_ALL=C awk -v TRAIN="$tmp_train" -v HELD="$tmp_held" -v CORPUS="$tmp_corpus" \
    -v MIN_Q=8 -v N_T=2 -v MAX_A=300 -v AUG="${AUG:-3}" '
function rnd(n) { return int(rand() * n) }

# Replaces the first whole-word occurrence of `from` outside `backticks` by `to`.
function replace_word(s, from, to,    i, pre, c0, c1, ticks, j) {
    i = index(s, from)
    if (!i) return s
    pre = substr(s, 1, i - 1)
    c0 = i > 1 ? substr(s, i - 1, 1) : " "
    c1 = substr(s, i + length(from), 1)
    ticks = gsub(/`/, "`", pre)
    if (ticks % 2 || c0 !~ /[ (]/ || c1 ~ /[A-Za-z0-9_\/.-]/) return s
    return pre to substr(s, i + length(from))
}

function plain_word(w) { return w !~ /[`\/_.\[\]=:-]/ && w !~ /^-/ }

function augment(q,    s, k, n, alts, w, i, j, out, a, b) {
    s = q
    for (k = 1; k <= NSYN; k++)
        if (index(s, SYN_FROM[k]) && rand() < 0.5) {
            n = split(SYN_TO[k], alts, "|")
            s = replace_word(s, SYN_FROM[k], alts[1 + rnd(n)])
        }
    n = split(s, w, " ")
    if (n >= 4 && rand() < 0.35) { # drop one plain word
        i = 1 + rnd(n)
        if (plain_word(w[i])) {
            out = ""
            for (j = 1; j <= n; j++) if (j != i) out = out (out == "" ? "" : " ") w[j]
            s = out
        }
    }
    if (rand() < 0.2) { # swap two letters of a plain word
        n = split(s, w, " ")
        i = 1 + rnd(n)
        if (plain_word(w[i]) && length(w[i]) >= 5) {
            j = 2 + rnd(length(w[i]) - 3)
            a = substr(w[i], j, 1); b = substr(w[i], j + 1, 1)
            w[i] = substr(w[i], 1, j - 1) b a substr(w[i], j + 2)
            out = ""
            for (j = 1; j <= n; j++) out = out (j > 1 ? " " : "") w[j]
            s = out
        }
    }
    if (rand() < 0.3 && s !~ /`/) s = tolower(s)
    if (rand() < 0.3) sub(/[?.!]+$/, "", s)
    if (rand() < 0.3) s = PREFIX[1 + rnd(NPREFIX)] s
    else if (rand() < 0.15) s = s SUFFIX[1 + rnd(NSUFFIX)]
    return s
}

function err(line, msg) {
    printf "facts.txt:%d: %s\n", line, msg > "/dev/stderr"
    nerr++
}

# JSON string body: backslash, double quote and control bytes escaped.
function jesc(s,    i, c, o) {
    o = ""
    for (i = 1; i <= length(s); i++) {
        c = substr(s, i, 1)
        if (c == "\\") o = o "\\\\"
        else if (c == "\"") o = o "\\\""
        else if (c in CTRL) o = o CTRL[c]
        else o = o c
    }
    return o
}

function trim(s) {
    sub(/^[ \t]+/, "", s)
    sub(/[ \t]+$/, "", s)
    return s
}

# Checks the record being read and, when it is sound, stores it for output.
function close_record(    i, j, nk, ks, key, ok) {
    if (!in_rec) return
    in_rec = 0
    if (rid == "") { err(rline, "record without an @ id line"); return }
    if (nK == 0) err(rline, "fact " rid ": no K: line")
    if (nQ < MIN_Q) err(rline, "fact " rid ": " nQ " Q: lines, at least " MIN_Q " needed")
    if (nT != N_T) err(rline, "fact " rid ": " nT " T: lines, exactly " N_T " needed")
    if (nA != 1) err(rline, "fact " rid ": " nA " A: lines, exactly 1 needed")
    ok = (nK > 0 && nQ >= MIN_Q && nT == N_T && nA == 1)
    if (nA == 1) {
        nk = split(kw, ks, " \\| ")
        for (j = 1; j <= nk; j++) {
            key = ks[j]
            if (key == "") { err(kline, "fact " rid ": empty keyword"); ok = 0; continue }
            if (index(ans, key) == 0) {
                err(kline, "fact " rid ": keyword \"" key "\" does not occur in its A line")
                ok = 0
            }
        }
    }
    if (!ok) return
    nf++
    F_id[nf] = rid; F_kw[nf] = kw; F_a[nf] = ans; F_nq[nf] = nQ
    for (i = 1; i <= nQ; i++) F_q[nf, i] = Q[i]
    for (i = 1; i <= nT; i++) F_t[nf, i] = T[i]
}

BEGIN {
    srand(42)
    NSYN = split("How do I|how do i|How can I|What is|what is|Is there a way to|start|stop|show|list|change|configure|the daemon|download|delete|remove|use|default|enable|disable|file|command|Where|find|want|see", SYN_FROM, "|")
    SYN_TO[1] = "How can I;How would I;What is the way to;How to"
    SYN_TO[2] = "how can i;how to;whats the way to"
    SYN_TO[3] = "How do I;How could I;Can I"
    SYN_TO[4] = "Whats;Tell me what is"
    SYN_TO[5] = "whats;tell me what is"
    SYN_TO[6] = "Can I;How can I;Is it possible to"
    SYN_TO[7] = "launch;run;begin;fire up"
    SYN_TO[8] = "kill;end;shut down;halt"
    SYN_TO[9] = "display;print;see;get"
    SYN_TO[10] = "show;display;see"
    SYN_TO[11] = "set;modify;adjust;alter"
    SYN_TO[12] = "set up;adjust;tune"
    SYN_TO[13] = "the server;the background service;the shammah daemon"
    SYN_TO[14] = "fetch;get;grab"
    SYN_TO[15] = "remove;erase;get rid of"
    SYN_TO[16] = "delete;drop;get rid of"
    SYN_TO[17] = "utilize;employ"
    SYN_TO[18] = "standard;usual"
    SYN_TO[19] = "turn on;activate;switch on"
    SYN_TO[20] = "turn off;deactivate;switch off"
    SYN_TO[21] = "path;file on disk"
    SYN_TO[22] = "cmd;subcommand"
    SYN_TO[23] = "In which place;Where exactly"
    SYN_TO[24] = "locate;look up"
    SYN_TO[25] = "need;would like"
    SYN_TO[26] = "check;view"
    for (k = 1; k <= NSYN; k++) gsub(/;/, "|", SYN_TO[k])
    NPREFIX = split("hey, |hi, |quick question: |so |ok so |um, |question: |hello, |shammah: |please, |I wonder, ", PREFIX, "|")
    NSUFFIX = split(" please| thanks| in shammah| with shammah| ??", SUFFIX, "|")
    for (i = 1; i < 32; i++) CTRL[sprintf("%c", i)] = sprintf("\\u%04x", i)
    CTRL["\t"] = "\\t"; CTRL["\n"] = "\\n"; CTRL["\r"] = "\\r"
    CTRL["\b"] = "\\b"; CTRL["\f"] = "\\f"
    CTRL[sprintf("%c", 127)] = "\\u007f"
    nerr = 0; nf = 0; in_rec = 0
}

{
    sub(/\r$/, "")
    line = $0
}

line ~ /^#/ { next }

line ~ /^[ \t]*$/ { close_record(); next }

{
    if (substr(line, 1, 2) == "@ ") {
        close_record()
        in_rec = 1; rline = NR; kline = NR
        rid = trim(substr(line, 3)); kw = ""; ans = ""
        nK = 0; nQ = 0; nT = 0; nA = 0
        if (rid !~ /^[a-z0-9-]+$/) err(NR, "bad fact id \"" rid "\" (use a-z 0-9 -)")
        if (rid in seen_id) err(NR, "duplicate fact id \"" rid "\" (first at line " seen_id[rid] ")")
        else seen_id[rid] = NR
        next
    }
    if (!in_rec) {
        # a record whose @ line is missing still gets checked, and reported once
        in_rec = 1; rline = NR; kline = NR; rid = ""; kw = ""; ans = ""
        nK = 0; nQ = 0; nT = 0; nA = 0
    }
    tag = substr(line, 1, 3)
    text = trim(substr(line, 4))
    if (tag != "K: " && tag != "Q: " && tag != "T: " && tag != "A: ") {
        err(NR, "unknown line (expected @, K:, Q:, T:, A: or #)")
        next
    }
    if (text == "") { err(NR, "empty " substr(tag, 1, 2) " line"); next }
    if (index(text, "\t")) { err(NR, "tab character in the text"); next }
    if (tag == "K: ") {
        if (nK > 0) err(NR, "fact " rid ": a second K: line (separate keywords with \" | \")")
        nK++; kw = text; kline = NR
    } else if (tag == "Q: ") {
        Q[++nQ] = text
        low = tolower(text)
        if (low in seen_q) err(NR, "question repeated (also at line " seen_q[low] ")")
        else seen_q[low] = NR
    } else if (tag == "T: ") {
        T[++nT] = text
        low = tolower(text)
        if (low in seen_t) err(NR, "held-out question repeated (also at line " seen_t[low] ")")
        else seen_t[low] = NR
        held_line[low] = NR
    } else {
        nA++; ans = text
        if (length(text) > MAX_A) err(NR, "answer is " length(text) " bytes, at most " MAX_A)
    }
}

END {
    close_record()
    # a held-out question also used for training would not test anything
    for (low in held_line)
        if (low in seen_q)
            err(held_line[low], "held-out question also appears as a Q: line (line " seen_q[low] ")")
    if (nf == 0 && nerr == 0) err(NR, "no facts")
    if (nerr) {
        printf "make_data: %d problem(s) in facts.txt; nothing written\n", nerr > "/dev/stderr"
        exit 1
    }
    pairs = 0; held = 0
    for (f = 1; f <= nf; f++) {
        a = jesc(F_a[f])
        for (i = 1; i <= F_nq[f]; i++) {
            printf "{\"messages\":[{\"role\":\"user\",\"content\":\"%s\"},{\"role\":\"assistant\",\"content\":\"%s\"}]}\n", \
                jesc(F_q[f, i]), a > TRAIN
            print F_q[f, i] > CORPUS
            pairs++
            made = 0
            for (tries = 0; made < AUG && tries < 4 * AUG; tries++) {
                v = augment(F_q[f, i])
                lv = tolower(v)
                if (v == "" || (lv in seen_q) || (lv in held_line) || (lv in made_q)) continue
                made_q[lv] = 1
                made++
                printf "{\"messages\":[{\"role\":\"user\",\"content\":\"%s\"},{\"role\":\"assistant\",\"content\":\"%s\"}]}\n", \
                    jesc(v), a > TRAIN
                augmented++
            }
        }
        print F_a[f] > CORPUS
        for (i = 1; i <= N_T; i++) {
            print F_id[f] "\t" F_kw[f] "\t" F_t[f, i] > HELD
            held++
        }
    }
    close(TRAIN); close(CORPUS); close(HELD)
    printf "make_data: %d facts, %d train pairs (+%d augmented), %d held-out questions\n", nf, pairs, augmented, held > "/dev/stderr"
}
' "$facts"
rc=$?
if [ $rc -ne 0 ]; then
    rm -f "$tmp_train" "$tmp_held" "$tmp_corpus"
    exit 1
fi
mv "$tmp_train" "$out/train.jsonl" && mv "$tmp_held" "$out/heldout.tsv" &&
    mv "$tmp_corpus" "$out/corpus.txt" || exit 1
exit 0
