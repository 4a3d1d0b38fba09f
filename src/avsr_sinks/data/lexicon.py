"""Project-written English lexicon with parts of speech, for the synthetic corpus.

Each list is ordered roughly from most to least frequent, so the rank inside a list drives the
Zipf-like sampling weights. Words were chosen to be common, unambiguous to spell from speech
(no homophone pairs such as "two/too", "threw/through", no British/American spelling variants)
and clearly pronounced by eSpeak, because a zero-shot ASR model must be able to transcribe them.

Notation inside the strings: ``word=form,...`` overrides inflections (nouns: plural; verbs:
past, -ing, 3rd-person singular) and a trailing ``*`` marks an uncountable noun.
"""

from __future__ import annotations

# People and animals: subjects of actions and objects of social verbs.
NOUN_PERSON = """
man=men woman=women child=children friend teacher mother father doctor student brother sister boy girl
baby parent husband wife=wives daughter uncle cousin king queen farmer driver worker player writer artist
singer dancer nurse lawyer officer soldier captain manager boss customer guest visitor stranger leader
partner owner cook pilot scientist engineer author reporter judge waiter chef coach kid lady grandmother
grandfather secretary actor musician dentist mechanic banker teenager tourist guard hunter painter
president neighbor dog cat horse bird cow pig rabbit mouse=mice fox lion tiger monkey duck chicken goat
wolf=wolves snake frog elephant puppy kitten donkey camel whale turtle spider owl parrot clown wizard
giant stranger princess=princesses prince=princes baker shepherd nephew niece
"""

# Concrete objects that be bought, carried, opened, cleaned.
NOUN_THING = """
book car door table chair phone letter box=boxes bag key window cup glass=glasses bottle plate bowl
knife=knives fork spoon ball hat shirt coat shoe dress=dresses jacket ring watch=watches clock picture
photo map ticket card gift bed lamp mirror towel pillow blanket basket bucket candle camera computer
radio screen keyboard pen pencil paper* notebook envelope newspaper magazine umbrella wallet coin apple
orange banana bread* cake cookie egg sandwich=sandwiches pizza cheese* butter* milk* water* coffee*
juice* soup* rice* chocolate* salt* sugar* potato=potatoes tomato=tomatoes carrot onion lemon cherry pie
bike boat bus=buses truck train ship taxi rocket sofa couch=couches desk shelf=shelves drawer
bench=benches ladder hammer rope wire brush=brushes soap* stove oven fridge kettle pot pan jar tray stone
rock stick leaf=leaves tree branch=branches toy doll kite drum guitar piano violin engine wheel battery
cable machine tool button boot sock glove scarf belt bracelet necklace brick fence gate roof flag feather
shell bone suitcase backpack bicycle helmet ladder balloon bell blanket bucket cake carpet chain coat
crown diamond dish=dishes fan fish=fish flashlight hose jewel ribbon ruler sack saucer scissors* shovel
sponge stamp statue string sweater tent thread tie toothbrush=toothbrushes trumpet vase wagon whistle
apron blender bowl cabinet calendar canoe card cart coin comb cushion dress drill eraser folder glue*
grill helmet jug lantern lid lock magnet marble mat medal mitten motor napkin needle net pan
peach=peaches pepper* pill pin pipe plank plate pocket pump puzzle quilt rake rug saddle scale screw
sheet shield sled soup spade spray* stool stove tablet teapot torch=torches trophy truck wrench=wrenches
yarn* zipper pillow potato sandal skirt slipper vest wig jeans* honey* tape* ink* paint* glue* sand*
snow* ice* oil* gold* silver* wood* metal* plastic* cotton* wool*
"""

# Places: targets of prepositional phrases.
NOUN_PLACE = """
house=houses room kitchen garden school office city town village street park store shop market bank
church=churches hospital library station airport hotel restaurant museum beach=beaches river lake forest
mountain hill field farm island valley desert ocean bridge highway corner building apartment castle
palace garage basement hallway bathroom bedroom classroom playground stadium gym bakery factory cave
tower temple country world yard lobby studio zoo camp club college pool cottage barn shore coast jungle
pond stream meadow cabin attic balcony subway tunnel harbor=harbors hall square tent village mall clinic
theater=theaters gallery=galleries warehouse prison kingdom planet desert dock
"""

# Abstract nouns and events: objects of verbs such as discuss, explain, finish.
NOUN_ABSTRACT = """
idea plan problem question answer reason story=stories news* information* advice* decision mistake chance
choice change result rule law job game party=parties meeting lesson class=classes test exam project
report topic secret joke promise dream fear hope memory=memories habit skill talent experience
opportunity=opportunities solution method system process=processes program budget price deal contract
offer request message truth* history* music* art* science* trip journey holiday vacation adventure race
match=matches concert show movie film contest festival ceremony wedding birthday dinner lunch=lunches
breakfast meal conversation discussion argument agreement interview lecture presentation schedule
deadline goal purpose effort progress* success* future* situation condition position issue event accident
difference difficulty=difficulties puzzle weekend speech=speeches recipe poem song picnic lunch homework*
research* danger plot chapter riddle
"""

# Verbs taking a concrete object.
VERB_THING = """
take=took,taking make=made,making find=found bring=brought buy=bought sell=sold open close=closed,closing
carry=carried hold=held drop=dropped,dropping push pull wash clean fix break=broke,breaking build=built
paint cook eat=ate drink=drank catch=caught,catching,catches keep=kept leave=left,leaving
lose=lost,losing send=sent use=used,using need want like=liked,liking love=loved,loving move=moved,moving
check count fill cover cut=cut,cutting draw=drew fold hide=hid,hiding lift pack share=shared,sharing
steal=stole borrow return deliver order collect choose=chose,choosing wrap=wrapped,wrapping touch
grab=grabbed,grabbing kick burn bake=baked,baking boil mix sign print copy=copied lock unlock
replace=replaced,replacing repair test measure=measured,measuring own notice=noticed,noticing grow=grew
hang=hung shake=shook,shaking dig=dug,digging sweep=swept bend=bent smell taste=tasted,tasting
hit=hit,hitting spill fetch polish squeeze=squeezed,squeezing stack paint protect pack
rescue=rescued,rescuing climb
"""

# Verbs taking a person or animal as object.
VERB_PERSON = """
meet=met call help visit thank ask tell=told invite=invited,inviting follow teach=taught remind warn join
miss hug=hugged,hugging pay=paid greet trust hire=hired,hiring surprise=surprised,surprising
marry=married chase=chased,chasing wake=woke,waking feed=fed hear=heard find=found kiss carry=carried
thank comfort encourage=encouraged,encouraging interrupt introduce=introduced,introducing
praise=praised,praising tease=teased,teasing welcome=welcomed,welcoming
"""

# Verbs taking an abstract object.
VERB_ABSTRACT = """
discuss explain understand=understood forget=forgot,forgetting remember change=changed,changing finish
start accept describe=described,describing solve=solved,solving enjoy prepare=prepared,preparing support
announce=announced,announcing review study=studied learn=learned consider mention ignore=ignored,ignoring
imagine=imagined,imagining suggest improve=improved,improving plan=planned,planning share=shared,sharing
repeat avoid reject record=recorded complete=completed,completing organize=organized,organizing
explore=explored,exploring protect postpone
"""

# Intransitive verbs.
VERB_INTRANS = """
arrive=arrived,arriving go=went,going,goes come=came,coming run=ran,running walk sleep=slept laugh
smile=smiled,smiling cry=cried wait dance=danced,dancing sing=sang jump fall=fell sit=sat,sitting
stand=stood work play talk stay rest listen agree=agreed,agreeing complain disappear shout whisper
drive=drove,driving climb cough sneeze=sneezed,sneezing relax swim=swam,swimming hurry=hurried
argue=argued,arguing kneel=knelt snore yawn wave=waved,waving nod=nodded,nodding
"""

ADVERB = """
quickly slowly quietly loudly carefully happily easily suddenly finally early again together alone
outside inside upstairs downstairs away home softly gently badly politely calmly proudly nervously
patiently eagerly angrily
"""

ADJECTIVE = """
good new old big small great little long short young important different bad hard easy strong happy sad
angry tired busy hungry friendly nice beautiful pretty ugly clean dirty warm cold hot cool dark bright
heavy soft loud quiet empty full cheap expensive fresh broken wet dry red green blue yellow white black
brown pink purple round square tall thin thick wide narrow deep strange funny serious simple special
perfect famous popular careful lucky lazy brave proud rich poor calm clever honest gentle polite shy
smart wise huge tiny wooden plastic useful modern ancient comfortable dangerous safe delicious sweet sour
salty crazy quick slow fancy lovely strict kind noisy sleepy sticky shiny rusty dusty muddy silly tidy
messy fat skinny sharp smooth rough curious nervous excited worried bored scared gentle generous humble
golden silver
"""

# Function words are listed so that they count toward the vocabulary and the vocab.txt file.
FUNCTION = """
the a an my your his her our their this that these those some every i you he she we they me him us them
it in on under near behind beside at from with into through across along around over to for of and but
because when after before while is was are were am will can could should might must did do does not very
really quite also just still always never often sometimes usually today yesterday tomorrow tonight last
next week month year morning evening night day there think thinks thought wants wanted decided please
let's maybe then so if what who where why how
"""
