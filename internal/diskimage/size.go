package diskimage

import (
	"path"
	"strings"
)

// Filesystem geometry the estimate and mke2fs share.
const (
	BlockSize      = 4096
	inodeSize      = 256
	blocksPerGroup = 8 * BlockSize // one block bitmap covers 32768 blocks
	journalBlocks  = 1024          // 4 MiB, mke2fs's minimum: the image is written once
	maxExtentLen   = 32768         // blocks in one initialised extent
	extentsPerLeaf = (BlockSize - 12) / 12
	gdEntry        = 64 // group descriptor bytes with the 64bit feature
	minJournaled   = 4096
)

// File is one entry of a tree to put in an image: a regular file (Size
// bytes) or, with Dir set, a directory.
type File struct {
	Path string // slash-separated, relative to the root
	Size int64
	Dir  bool
}

// Estimate returns the filesystem size in bytes (a whole number of
// blocks), the inode count and whether the filesystem gets a journal, for
// files: data and extent-tree blocks per file, directory blocks from the
// names they hold, inode tables, bitmaps, superblock and descriptor copies
// of every group, the journal, and a margin of 0.5% plus 1 MiB. Trees under
// 16 MiB get no journal: mke2fs refuses one that would take a quarter of
// the filesystem.
func Estimate(files []File) (size int64, inodes int, journal bool) {
	children := map[string]int{} // dir -> bytes of its entries
	dirs := map[string]bool{"": true}
	parentOf := func(p string) string {
		if d := path.Dir(p); d != "." {
			return d
		}
		return ""
	}
	entry := func(p string) int { return 8 + (len(path.Base(p))+3)/4*4 }
	addDir := func(d string) {
		for ; d != "" && !dirs[d]; d = parentOf(d) {
			dirs[d] = true
			children[parentOf(d)] += entry(d)
		}
	}
	var data int64
	regular := 0
	for _, f := range files {
		p := strings.Trim(f.Path, "/")
		if f.Dir {
			addDir(p)
			continue
		}
		regular++
		addDir(parentOf(p))
		children[parentOf(p)] += entry(p)
		blocks := (f.Size + BlockSize - 1) / BlockSize
		data += blocks
		// Extents break at the maximum length and where group metadata
		// sits; count two per extent length and one more. Beyond the four
		// in the inode they need leaf blocks, and beyond four leaves an
		// index block.
		extents := 2*((blocks+maxExtentLen-1)/maxExtentLen) + 1
		if extents > 4 {
			leaves := (extents + extentsPerLeaf - 1) / extentsPerLeaf
			data += leaves
			if leaves > 4 {
				data += 1 + leaves/extentsPerLeaf
			}
		}
	}
	// Directories: entries (8 bytes plus the name, 4-aligned) fill blocks
	// minus the checksum tail; a multi-block directory gets an htree root.
	for d := range dirs {
		bytes := int64(children[d]) + 24 // . and ..
		blocks := (bytes + BlockSize - 13) / (BlockSize - 12)
		if blocks > 1 {
			blocks += 1 + blocks/400
		}
		data += blocks
	}
	inodes = regular + len(dirs) + 16 // reserved inodes and lost+found
	inodes = (inodes + 15) / 16 * 16
	data += 16 // lost+found

	// Group metadata depends on the group count, which depends on the
	// total: iterate to a fixed point.
	jblocks := int64(0)
	if journal = data >= minJournaled; journal {
		jblocks = journalBlocks
	}
	total := data + jblocks
	for range 8 {
		groups := (total + blocksPerGroup - 1) / blocksPerGroup
		ipg := (int64(inodes) + groups - 1) / groups
		ipg = (ipg + 15) / 16 * 16 // whole inode-table blocks
		itable := (ipg*inodeSize + BlockSize - 1) / BlockSize
		gdt := (groups*gdEntry + BlockSize - 1) / BlockSize
		meta := groups*(2+itable) + int64(backups(groups))*(1+gdt)
		next := data + jblocks + meta
		next += next/200 + (1<<20)/BlockSize
		if next <= total {
			break
		}
		total = next
	}
	return total * BlockSize, inodes, journal
}

// backups counts the groups holding a superblock copy with sparse_super:
// 0, 1 and the powers of 3, 5 and 7.
func backups(groups int64) int {
	n := 1
	if groups > 1 {
		n++
	}
	for _, b := range []int64{3, 5, 7} {
		for p := b; p < groups; p *= b {
			n++
		}
	}
	return n
}
