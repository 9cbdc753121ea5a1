package chunker

import (
	"bytes"
	"flag"
	"fmt"
	"strings"
	"testing"
)

var printGolden = flag.Bool("golden.print", false, "print the golden vectors as Go literals (to pin a deliberate format change)")

type goldenChunk struct {
	off, length int
	hash        string
}

// goldenCases pin the chunking format: the Gear table, the cut rule, the
// hash and the manifest hash. Any change to one of them is a change of the
// wire format and must fail here. The inputs come from a fixed-seed ChaCha8
// stream, so they are the same on every platform and Go version.
var goldenCases = []struct {
	name     string
	p        Params
	data     func() []byte
	chunks   []goldenChunk // every chunk, when listed
	lengths  []int         // only the lengths, for inputs with many chunks
	manifest string
}{
	{
		name:     "empty",
		p:        DefaultParams,
		data:     func() []byte { return nil },
		chunks:   []goldenChunk{},
		manifest: "blake3-310a8b4fd7a3c9725bbcd0562d4baffa410411d30e223c21597e9809d1c8c365",
	},
	{
		name: "below-min",
		p:    DefaultParams,
		data: func() []byte { return randomData(1, 1000) },
		chunks: []goldenChunk{
			{0, 1000, "blake3-ce421e803c37a1a62a3a66dbdd60945a512ea1d34d96439194c204efaafda3bf"},
		},
		manifest: "blake3-380c4fcf5a43c839ed520c10c96724f7aa10edf3697a439b5310e2b8f0e03ffb",
	},
	{
		name: "random-default",
		p:    DefaultParams,
		data: func() []byte { return randomData(42, 1<<20+12345) },
		chunks: []goldenChunk{
			{0, 69486, "blake3-123f49eb3445c6decdd0095a064171031ba3b85fd89bba6f069780df6455f686"},
			{69486, 74967, "blake3-1438a2fd86d4816541e7f4d6acc4f4ece07b7bad48ef41930d1b0420c3b653f8"},
			{144453, 78778, "blake3-7479e315de5d87f16fae1690eaa32cd7ee31b7c2177ae67530afde78f29ad23a"},
			{223231, 84090, "blake3-3373a38a659b37661c13006a2c39ed4d4dad2e866df8af9e9614cdcb2a2b5ea5"},
			{307321, 68821, "blake3-ab0fe8b1c6d71fa63acd482aa38c347a91bf85e41ac4dd3b78d7c3bb8a57095c"},
			{376142, 66791, "blake3-58ad04e448ae5b34b0cff11ebea2743e44f0b5056dbaf07bba33b4e9cfe06f9e"},
			{442933, 91328, "blake3-1b352b0e8c4ac05a255e8fe254b2687080572fc81753a80c4ccfa1d109fbef4a"},
			{534261, 82442, "blake3-989cd95e2dd632a380bb20c33f278240856649e9c0f47069c70d5965accac5ef"},
			{616703, 90022, "blake3-bfc498ea7bc53cd4efc4be73cb374715b98217da0ae24c3277b31b8e107d9074"},
			{706725, 89073, "blake3-b46506e2529c95a3d72e6c30cf0b2a1f7bc880f2a59f4b609c3d0efbaacdb3fa"},
			{795798, 89644, "blake3-acedd9f74a6c955ea3c132496586f2354734f14536236eaf8c0caeb92c974525"},
			{885442, 98650, "blake3-076a71edf49ce2ea5cde20de9d4aefbf407b0035198597e1c275bbecc58d7e2f"},
			{984092, 71033, "blake3-c8948e3fb0441800399b2f34d247eb954f924ac9e6f033895f60acb472d7cac5"},
			{1055125, 5796, "blake3-b6873e0ce73416e45a06d30aba2e7a185a77c5d02b7d7b2e90daeeaf58007771"},
		},
		manifest: "blake3-9f95d91a711950b53066a9213f7a2aab0a3e3ae3c6b007976fb362897c3f1b99",
	},
	{
		name: "text-default",
		p:    DefaultParams,
		data: func() []byte { return textData(7, 1<<20) },
		chunks: []goldenChunk{
			{0, 76329, "blake3-fa95b2c848dd7fd2946826ee2966a7bdbd4eb6c65f58060f7df0e34006fb2e80"},
			{76329, 93808, "blake3-f8c3f727596c67cfa3a5267459b6b665461926ce8fa0801c80dabc3282d4e71c"},
			{170137, 67078, "blake3-08056d335ed2451ab7ca4a1875a7e23efad4182f5b0ff519c826f46c265ca7b5"},
			{237215, 69198, "blake3-a504c47a394054912a62d3663c8ca80add86c40853d894d08f81ad40eaa51349"},
			{306413, 53336, "blake3-28c696acf315d1e78db79b46fe6350c06c01b5348c556ab8fc33e40d5c0bebda"},
			{359749, 46793, "blake3-a7c90315ba2b5d1841a8a65a35d10bee95828034abcacbf7de93c638a5218cce"},
			{406542, 74931, "blake3-424ba5c8030fa2add69f9e7b9144a100c29ce05a705e2d1012837f739fe9cf96"},
			{481473, 100642, "blake3-879fb67084f8923b476b17ac60aa1df9b2dd5abe9bad77e59149ca0f86f9bd1e"},
			{582115, 68386, "blake3-4d2560f01c9ec50468e51bb20d496ebd04f33e0094a3cd98e8479c9b038f8d37"},
			{650501, 73783, "blake3-c62fa145c8cd155c36a0cc62a17b578b7371dc2a266117a8fa06ab56c8816dcd"},
			{724284, 48802, "blake3-50ee6466d6985b890174b014a455458d61a58af5a0a09536594c7a21a72f6d8a"},
			{773086, 110469, "blake3-d24ae4b47a05300882d01bb4dcec586e0dd5b1b14d58738a84fec7a04488a35c"},
			{883555, 82459, "blake3-00c9aa7979b62d559c4e5a6cf3455fc7b45415fe6599a0aff6c1821402cfaf88"},
			{966014, 28811, "blake3-68231c948bcbd104e553940fbd5ad1d9b58368eacc28220c9f9eca69b01c1fde"},
			{994825, 53751, "blake3-6af0136a42fbead73b92f3aef915f081acbbff9cce57a3911c3ffa9038971a23"},
		},
		manifest: "blake3-43c7d1dc3268a03b4e51be38b99286f759c87e09aca811b68bb0e94c2008ee2a",
	},
	{
		name: "random-small",
		p:    smallParams,
		data: func() []byte { return randomData(43, 64<<10) },
		lengths: []int{
			1561, 1741, 844, 1571, 301, 1266, 523, 1038, 1273, 682, 1444, 1026, 287, 1050, 1173, 1251,
			622, 1066, 274, 1322, 1295, 1168, 1110, 581, 1365, 1095, 499, 332, 1753, 1949, 1393, 548,
			1382, 1668, 1333, 1051, 762, 1693, 889, 1029, 1808, 1348, 749, 1529, 1078, 1101, 1156, 1514,
			1078, 1028, 1273, 1119, 1046, 1072, 1151, 1142, 1508, 771, 855,
		},
		manifest: "blake3-ff092ba4f720ad011869321bbaa3eda68d0e95f191f79b9247dc3e8dcf83b5be",
	},
	{
		name: "text-small",
		p:    smallParams,
		data: func() []byte { return textData(44, 64<<10) },
		lengths: []int{
			634, 1466, 1036, 1148, 1218, 1245, 1093, 302, 1230, 1647, 1282, 1383, 1299, 1220, 1243, 394,
			2001, 1738, 1150, 903, 1076, 1221, 1104, 1225, 1236, 1234, 1377, 1149, 945, 1066, 1504, 1109,
			1396, 1037, 1218, 1171, 1247, 1933, 1440, 1135, 427, 1114, 1158, 430, 1106, 1189, 1177, 810,
			1333, 1361, 1079, 1391, 1106, 368, 1406, 1100, 526,
		},
		manifest: "blake3-fe864a886a90735165ad22e5db3c72ba0f42973f58ba4b516829ce3a8a83c822",
	},
}

func TestGolden(t *testing.T) {
	if *printGolden {
		printGoldenCases(t)
		return
	}
	if len(goldenCases) == 0 {
		t.Fatal("no golden cases")
	}
	for _, gc := range goldenCases {
		t.Run(gc.name, func(t *testing.T) {
			data := gc.data()
			m, err := Split(bytes.NewReader(data), gc.p)
			if err != nil {
				t.Fatal(err)
			}
			if gc.chunks != nil {
				if len(m.Chunks) != len(gc.chunks) {
					t.Fatalf("%d chunks, want %d", len(m.Chunks), len(gc.chunks))
				}
				off := 0
				for i, c := range m.Chunks {
					want := gc.chunks[i]
					if off != want.off || int(c.Length) != want.length || c.Hash.String() != want.hash {
						t.Errorf("chunk %d = {%d, %d, %s}, want {%d, %d, %s}", i, off, c.Length, c.Hash, want.off, want.length, want.hash)
					}
					off += int(c.Length)
				}
			}
			if gc.lengths != nil {
				got := make([]int, len(m.Chunks))
				for i, c := range m.Chunks {
					got[i] = int(c.Length)
				}
				if !equalInts(got, gc.lengths) {
					t.Errorf("lengths %v, want %v", got, gc.lengths)
				}
			}
			if got := m.Hash().String(); got != gc.manifest {
				t.Errorf("manifest hash %s, want %s", got, gc.manifest)
			}
		})
	}
}

// goldenInputs are the inputs of goldenCases; printGoldenCases writes
// literals for them.
var goldenInputs = []struct {
	name   string
	expr   string
	p      Params
	pexpr  string
	data   func() []byte
	listed bool
}{
	{"empty", "func() []byte { return nil }", DefaultParams, "DefaultParams", func() []byte { return nil }, true},
	{"below-min", "func() []byte { return randomData(1, 1000) }", DefaultParams, "DefaultParams", func() []byte { return randomData(1, 1000) }, true},
	{"random-default", "func() []byte { return randomData(42, 1<<20+12345) }", DefaultParams, "DefaultParams", func() []byte { return randomData(42, 1<<20+12345) }, true},
	{"text-default", "func() []byte { return textData(7, 1<<20) }", DefaultParams, "DefaultParams", func() []byte { return textData(7, 1<<20) }, true},
	{"random-small", "func() []byte { return randomData(43, 64<<10) }", smallParams, "smallParams", func() []byte { return randomData(43, 64<<10) }, false},
	{"text-small", "func() []byte { return textData(44, 64<<10) }", smallParams, "smallParams", func() []byte { return textData(44, 64<<10) }, false},
}

func printGoldenCases(t *testing.T) {
	var b strings.Builder
	for _, in := range goldenInputs {
		m, err := Split(bytes.NewReader(in.data()), in.p)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "\t{\n\t\tname: %q,\n\t\tp:    %s,\n\t\tdata: %s,\n", in.name, in.pexpr, in.expr)
		if in.listed {
			b.WriteString("\t\tchunks: []goldenChunk{\n")
			off := 0
			for _, c := range m.Chunks {
				fmt.Fprintf(&b, "\t\t\t{%d, %d, %q},\n", off, c.Length, c.Hash.String())
				off += int(c.Length)
			}
			b.WriteString("\t\t},\n")
		} else {
			b.WriteString("\t\tlengths: []int{")
			for i, c := range m.Chunks {
				if i%16 == 0 {
					b.WriteString("\n\t\t\t")
				}
				fmt.Fprintf(&b, "%d, ", c.Length)
			}
			b.WriteString("\n\t\t},\n")
		}
		fmt.Fprintf(&b, "\t\tmanifest: %q,\n\t},\n", m.Hash().String())
	}
	fmt.Print(b.String())
}
