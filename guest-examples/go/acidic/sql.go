package acidic

import (
	"encoding/json"
	"fmt"
)

// `value` discriminants, in WIT order.
const (
	tagNull uint8 = iota
	tagInteger
	tagReal
	tagText
	tagBlob
	tagJSON
)

type sqlValue struct {
	tag uint8
	i   int64
	f   float64
	s   string
	b   []byte
}

// sqlValueOf maps a Go parameter to a SQL value.
func sqlValueOf(p any) (sqlValue, error) {
	switch v := p.(type) {
	case nil:
		return sqlValue{tag: tagNull}, nil
	case bool:
		if v {
			return sqlValue{tag: tagInteger, i: 1}, nil
		}
		return sqlValue{tag: tagInteger}, nil
	case int:
		return sqlValue{tag: tagInteger, i: int64(v)}, nil
	case int8:
		return sqlValue{tag: tagInteger, i: int64(v)}, nil
	case int16:
		return sqlValue{tag: tagInteger, i: int64(v)}, nil
	case int32:
		return sqlValue{tag: tagInteger, i: int64(v)}, nil
	case int64:
		return sqlValue{tag: tagInteger, i: v}, nil
	case uint8:
		return sqlValue{tag: tagInteger, i: int64(v)}, nil
	case uint16:
		return sqlValue{tag: tagInteger, i: int64(v)}, nil
	case uint32:
		return sqlValue{tag: tagInteger, i: int64(v)}, nil
	case uint:
		return uintValue(uint64(v))
	case uint64:
		return uintValue(v)
	case float32:
		return sqlValue{tag: tagReal, f: float64(v)}, nil
	case float64:
		return sqlValue{tag: tagReal, f: v}, nil
	case string:
		return sqlValue{tag: tagText, s: v}, nil
	case []byte:
		return sqlValue{tag: tagBlob, b: v}, nil
	case RawJSON:
		return sqlValue{tag: tagJSON, s: string(v)}, nil
	default:
		b, err := json.Marshal(v)
		if err != nil {
			return sqlValue{}, Fatal("sql parameter %T: %v", p, err)
		}
		return sqlValue{tag: tagJSON, s: string(b)}, nil
	}
}

func uintValue(v uint64) (sqlValue, error) {
	if v > 1<<63-1 {
		return sqlValue{}, Fatal("sql parameter %s does not fit a 64-bit integer", fmt.Sprint(v))
	}
	return sqlValue{tag: tagInteger, i: int64(v)}, nil
}
