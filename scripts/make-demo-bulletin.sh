#!/bin/sh
# Regenerate audio/data/demo-bulletin.ogg, the bulletin the built-in demo plays.
#
# The voice is espeak-ng's Vietnamese (-v vi), made here so the file has no
# author's rights attached and anyone can rebuild it. The text (in English:
# "Hello, everyone. This is a test bulletin of the grassroots loudspeaker
# system. The loudspeaker of this village is being checked; you need do
# nothing. If you hear this bulletin clearly, the loudspeaker works well.
# Thank you for listening."):
#
#   Xin chào bà con. Đây là bản tin thử nghiệm của hệ thống loa truyền thanh
#   cơ sở. Loa của thôn đang được kiểm tra, bà con không cần làm gì thêm.
#   Nếu bà con nghe rõ bản tin này, loa đã hoạt động tốt.
#   Xin cảm ơn bà con đã lắng nghe.
#
# Encoding: Ogg Opus, mono, 48 kHz, 28 kbit/s (speech-optimised); loudness
# normalised towards -16 LUFS with a -3 dBTP ceiling (the ceiling wins: it lands
# near -18.5 LUFS; the unit renormalises when it prepares media anyway); half a
# second of silence at each end so the first syllable is not lost while an
# amplifier settles. About 21 s long.
#
# Usage: scripts/make-demo-bulletin.sh [OUTPUT]   (needs espeak-ng and ffmpeg)
set -eu

here=$(cd "$(dirname "$0")" && pwd)
out=${1:-"$here/../audio/data/demo-bulletin.ogg"}

text="Xin chào bà con. Đây là bản tin thử nghiệm của hệ thống loa truyền thanh cơ sở. \
Loa của thôn đang được kiểm tra, bà con không cần làm gì thêm. \
Nếu bà con nghe rõ bản tin này, loa đã hoạt động tốt. \
Xin cảm ơn bà con đã lắng nghe."

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# -s: words per minute, a little slower than espeak's 175 for loudspeakers that
# echo between houses; -g: extra pause between words, in 10 ms units.
espeak-ng -v vi -s 140 -g 2 -w "$work/speech.wav" "$text"

ffmpeg -nostdin -hide_banner -loglevel error -y -i "$work/speech.wav" \
    -af "adelay=500,apad=pad_dur=0.5,loudnorm=I=-16:TP=-3:LRA=11" \
    -ac 1 -ar 48000 -c:a libopus -b:a 28k -application voip \
    -map_metadata -1 -fflags +bitexact -flags:a +bitexact \
    -metadata title="loaxa demo bulletin (espeak-ng vi)" \
    "$work/demo-bulletin.ogg"

mv "$work/demo-bulletin.ogg" "$out"
echo "wrote $out ($(ffprobe -v error -show_entries format=duration -of csv=p=0 "$out") s)"
